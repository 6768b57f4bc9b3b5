import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keyringOf, open, parseHeader, privateRecipientFromPem } from '../../core/envelope.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import type { TlsMaterial } from '../../core/tls-gen.ts';
import type { ReportRequest__Output } from '../../proto/generated/pwsync/v1/ReportRequest.ts';
import { createHubServer, tlsOnlyServer, type ChangeAck, type HubServer } from '../../proto/channel.ts';

/** What a test hub took: the change as it came, and the password it opened (test memory only). */
export interface Received {
  changeId: string;
  account: string;
  sourceDc: string;
  password: Buffer;
}

/**
 * A hub-like gRPC server for notifier tests: TLS from `tls`, its own recipient key (the public half
 * written to `<dir>/<name>.pub`), and a Submit that opens each envelope with the private key,
 * checks it against the message around it, and answers ACCEPTED_DURABLE. Stop and start it on
 * the same port to play a hub that is down.
 */
export class TestHub {
  readonly received: Received[] = [];
  /** Submit calls begun and finished; `delayMs` holds each answer back. */
  begun = 0;
  finished = 0;
  delayMs = 0;
  /** When set, Submit refuses a change sealed for its key as the hub does for a key it does not open (hub/ingest.ts). */
  refuseOwnKey = false;
  /** When set, the hub answers Report calls with these key ids; else Report is unimplemented (an older hub). */
  reportKeyIds: string[] | undefined;
  reports = 0;
  lastReport: ReportRequest__Output | undefined;
  readonly publicKeyFile: string;
  port = 0;
  private server: HubServer | undefined;
  private readonly keys = generateRecipientKeys();

  constructor(readonly name: string, dir: string, private readonly tls: TlsMaterial) {
    this.publicKeyFile = join(dir, `${name}.pub`);
    writeFileSync(this.publicKeyFile, this.keys.publicPem);
  }

  get keyId(): string {
    return this.keys.keyId;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const keyring = keyringOf([privateRecipientFromPem(this.keys.privatePem)]);
    this.server = await createHubServer({
      listen: this.address, tlsCert: Buffer.from(this.tls.certPem), tlsKey: Buffer.from(this.tls.keyPem),
      maxMessageBytes: 4 * 1024 * 1024, auth: tlsOnlyServer(), hubId: this.name,
      submit: async (req) => {
        this.begun++;
        if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
        const acks: ChangeAck[] = req.changes.map((c) => {
          if (this.refuseOwnKey) {
            const keyId = parseHeader(c.sealedPassword).header.keyId.toString('hex');
            return { changeId: c.changeId, status: 'REJECTED', reason: `sealed for key id ${keyId}, but this hub opens only 00000000000000000000000000000000: give the notifier the hub's current public key` };
          }
          const { header, password } = open(c.sealedPassword, keyring);
          const ok = header.changeId.equals(c.changeId) && header.samAccountName === c.account?.samAccountName;
          this.received.push({
            changeId: c.changeId.toString('hex'), account: header.samAccountName, sourceDc: header.sourceHost,
            password: password.use((b) => Buffer.from(b)),
          });
          password.dispose();
          return { changeId: c.changeId, status: ok ? 'ACCEPTED_DURABLE' : 'REJECTED', reason: ok ? '' : 'envelope does not match the change' };
        });
        this.finished++;
        return acks;
      },
      ...(this.reportKeyIds ? {
        report: async (req) => {
          this.reports++;
          this.lastReport = req;
          return { hubTimeMs: Date.now(), storedNoticeIds: [], keyIds: this.reportKeyIds ?? [] };
        },
      } : {}),
    });
    this.port = this.server.port;
    return this;
  }

  async stop(): Promise<void> {
    await this.server?.close(1000);
    this.server = undefined;
  }
}
