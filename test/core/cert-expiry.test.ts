import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { certificateEnding, watchCertificateExpiry } from '../../core/cert-expiry.ts';
import { generateTlsMaterial, issueClientCertificate } from '../../core/tls-gen.ts';

/** Event 6978: a certificate callers authenticate with, a month or less from its end, or past it. */
const DAY = 86_400_000;

test('a certificate ending within 30 days, or ended, is warned about (6978) at once; one with longer to run is not', async () => {
  const m = await generateTlsMaterial({ hosts: ['localhost'], days: 365 });
  const now = Date.now();
  const issue = async (dc: string, endsIn: number) => Buffer.from((await issueClientCertificate({
    caCertPem: m.caCertPem, caKeyPem: m.caKeyPem, dc, validity: { from: new Date(now - 60 * DAY), to: new Date(now + endsIn) },
  })).certPem);
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } });
  const stop = watchCertificateExpiry(log, [
    { setting: 'targets[hub1].tls.cert', file: '/etc/pwsync/dc1.crt', pem: await issue('dc1.corp.example.com', 10 * DAY + 3_600_000) },
    { setting: 'targets[hub2].tls.cert', file: '/etc/pwsync/dc2.crt', pem: await issue('dc2.corp.example.com', -DAY) },
    { setting: 'targets[hub3].tls.cert', file: '/etc/pwsync/dc3.crt', pem: await issue('dc3.corp.example.com', 31 * DAY) },
  ], () => now);
  stop();
  const warned = lines.filter((l) => l['eventId'] === 6978);
  assert.deepEqual(warned.map((l) => [l['setting'], l['daysLeft']]), [['targets[hub1].tls.cert', 10], ['targets[hub2].tls.cert', -1]]);
  assert.match(String(warned[0]!['msg']), /targets\[hub1\]\.tls\.cert \(CN=dc1\.corp\.example\.com\) expires on \d{4}-.* \(in 10 days\)/);
  assert.match(String(warned[1]!['msg']), /targets\[hub2\]\.tls\.cert \(CN=dc2\.corp\.example\.com\) expired on /);
  assert.match(String(warned[0]!['fix']), /pwsync tls client .*--force/);
  assert.equal(certificateEnding(Buffer.from(m.caCertPem), now), undefined, 'a CA a year from its end');
  assert.equal(certificateEnding(Buffer.from(m.caCertPem), now + 340 * DAY)?.daysLeft, 24);
});
