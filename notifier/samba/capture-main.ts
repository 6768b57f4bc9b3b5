import { readInput, runCaptureScript } from './capture-script.ts';

/**
 * The capture script's process: `node <this> CAPTURE_JSON < LDIF`. Run bundled into one plain
 * JavaScript file (the supervisor builds `<dataDir>/samba/capture.mjs` at start: no TypeScript
 * loader to start per change), or through bin/pwsync-samba-capture.mjs where bundling is not
 * possible. Prints `DONE-EXIT: …` and exits 0 only once the notifier has the change.
 */
async function main(configFile: string | undefined): Promise<number> {
  if (!configFile) {
    process.stderr.write('pwsync-samba-capture: usage: CAPTURE_SCRIPT CAPTURE_JSON < LDIF (run by samba-tool user syncpasswords)\n');
    return 2;
  }
  let outcome;
  try {
    outcome = await runCaptureScript(configFile, await readInput(process.stdin), process.env);
  } catch (e) {
    outcome = { error: e instanceof Error ? e.message : 'unexpected failure' };
  }
  if ('done' in outcome) {
    process.stdout.write(`DONE-EXIT: ${outcome.done}\n`);
    return 0;
  }
  process.stderr.write(`pwsync-samba-capture: ${outcome.error}\n`);
  return 1;
}

process.exitCode = await main(process.argv[2]);
