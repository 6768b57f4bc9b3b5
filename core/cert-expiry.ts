import { X509Certificate } from 'node:crypto';
import { EVENTS } from './events.ts';
import type { Logger } from './log.ts';

/**
 * Event 6978: a certificate that callers are authenticated with (a DC's client certificate, the
 * hub's client CA) near its end. Once it has expired every delivery is refused in the handshake
 * and changes only queue, so the warning comes a month ahead, at start and every hour.
 */
const NOTICE_MS = 30 * 86_400_000;
const REPEAT_MS = 3_600_000;

export interface WatchedCertificate {
  /** The YAML setting that names it, for the message: `targets[hub1].tls.cert`. */
  setting: string;
  file: string;
  pem: Buffer;
}

/** When the certificate ends and how far off that is, if within the notice period (or past). */
export function certificateEnding(pem: Buffer, now: number): { subject: string; validTo: string; daysLeft: number } | undefined {
  const cert = new X509Certificate(pem);
  const left = Date.parse(cert.validTo) - now;
  if (left > NOTICE_MS) return undefined;
  return { subject: cert.subject.replace(/\n/g, ', '), validTo: new Date(Date.parse(cert.validTo)).toISOString(), daysLeft: Math.trunc(left / 86_400_000) };
}

/** Checks each certificate now and every hour; returns the function that stops the checks. */
export function watchCertificateExpiry(log: Logger, certificates: readonly WatchedCertificate[], now: () => number = Date.now): () => void {
  if (certificates.length === 0) return () => {};
  const check = (): void => {
    for (const c of certificates) {
      const ending = certificateEnding(c.pem, now());
      if (!ending) continue;
      const when = ending.daysLeft < 0 ? `expired on ${ending.validTo}` : `expires on ${ending.validTo} (in ${ending.daysLeft} days)`;
      log.warn({ eventId: 6978, setting: c.setting, file: c.file, subject: ending.subject, validTo: ending.validTo, daysLeft: ending.daysLeft, fix: EVENTS[6978].fix },
        `${EVENTS[6978].text}: ${c.setting} (${ending.subject}) ${when}`);
    }
  };
  check();
  const timer = setInterval(check, REPEAT_MS).unref();
  return () => clearInterval(timer);
}
