import { readFileSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';

/** Edits a YAML file a lab wrote, keeping its first line (the editor's schema comment). */
export function editYaml(file: string, edit: (doc: Record<string, any>) => void): void {
  const text = readFileSync(file, 'utf8');
  const doc = parse(text) as Record<string, any>;
  edit(doc);
  writeFileSync(file, `${text.split('\n')[0]}\n${stringify(doc)}`);
}
