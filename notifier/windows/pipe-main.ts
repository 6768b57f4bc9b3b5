import { appendFileSync, writeFileSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startPipeEndpoint, type EndpointLog } from './pipe-endpoint.ts';

/**
 * The pipe endpoint on its own: `node pwsync-pipe.mjs --pipe NAME --spool DIR [--log FILE]
 * [--ready FILE]`. Bundled to build/windows/pwsync-pipe.mjs (scripts/bundle-pipe-endpoint.ts) so
 * that any Windows node.exe runs it without node_modules; the tests run it under Wine, where
 * only a Windows process can serve a Windows pipe. Logs JSON lines to FILE (or standard error):
 * Windows node.exe under Wine crashes writing to a Unix pipe through process.stdout.
 */
const { values } = parseArgs({
  options: {
    pipe: { type: 'string' },
    spool: { type: 'string' },
    log: { type: 'string' },
    ready: { type: 'string' },
  },
  strict: true,
});
if (!values.pipe || !values.spool) {
  writeSync(2, 'usage: pwsync-pipe --pipe \\\\.\\pipe\\NAME --spool DIR [--log FILE] [--ready FILE]\n');
  process.exit(2);
}
const logFile = values.log;
const line = (level: string) => (fields: object, msg: string): void => {
  const text = `${JSON.stringify({ time: new Date().toISOString(), level, pid: process.pid, ...fields, msg })}\n`;
  if (logFile) appendFileSync(logFile, text);
  else writeSync(2, text);
};
const log: EndpointLog = { info: line('info'), warn: line('warn'), error: line('error') };

try {
  const endpoint = await startPipeEndpoint({ pipe: values.pipe, spoolDir: values.spool, log });
  if (values.ready) writeFileSync(values.ready, `${process.pid}\n`);
  const stop = (signal: string): void => {
    log.info({ signal, acked: endpoint.acked }, 'pipe endpoint stopping');
    void endpoint.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
} catch (e) {
  log.error({ err: (e as Error).message }, 'pipe endpoint cannot start');
  process.exit(1);
}
