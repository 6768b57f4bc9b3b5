import * as grpc from '@grpc/grpc-js';
import type { ReportRequest } from '../../proto/generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse__Output } from '../../proto/generated/pwsync/v1/ReportResponse.ts';
import type { SubmitRequest } from '../../proto/generated/pwsync/v1/SubmitRequest.ts';
import type { SubmitResponse__Output } from '../../proto/generated/pwsync/v1/SubmitResponse.ts';
import { pwsyncV1 } from '../../proto/service.ts';

/**
 * A hub call with hand-made request bytes: a request encoded by the generated types, then patched
 * (`patch` swaps each ASCII marker for the raw bytes given), and sent as is. What a notifier built
 * from another proto, or an attacker, could send; the regular client cannot.
 */
export interface RawHubClient {
  submit(req: SubmitRequest, patch?: Array<[string, Buffer]>): Promise<SubmitResponse__Output>;
  report(req: ReportRequest, patch?: Array<[string, Buffer]>): Promise<ReportResponse__Output>;
  close(): void;
}

/** Replaces each marker (which must occur exactly once) by bytes of the same length. */
export function patchBytes(bytes: Buffer, patch: Array<[string, Buffer]>): Buffer {
  const out = Buffer.from(bytes);
  for (const [marker, replacement] of patch) {
    const m = Buffer.from(marker, 'utf8');
    if (m.length !== replacement.length) throw new Error(`marker ${marker} and its replacement differ in length`);
    const at = out.indexOf(m);
    if (at < 0 || out.indexOf(m, at + 1) >= 0) throw new Error(`marker ${marker} must occur exactly once in the request`);
    replacement.copy(out, at);
  }
  return out;
}

export function rawHubClient(opts: { address: string; ca: Buffer; serverName?: string; metadata?: Record<string, string> }): RawHubClient {
  const sync = pwsyncV1().PasswordSync.service;
  const client = new grpc.Client(opts.address, grpc.credentials.createSsl(opts.ca),
    opts.serverName ? { 'grpc.ssl_target_name_override': opts.serverName } : {});
  const call = <Res>(path: string, bytes: Buffer, decode: (b: Buffer) => Res): Promise<Res> => new Promise((resolve, reject) => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
    client.makeUnaryRequest(path, (b: Buffer) => b, decode, bytes, md, { deadline: Date.now() + 20_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
  return {
    submit: (req, patch = []) => call('/pwsync.v1.PasswordSync/Submit', patchBytes(sync.Submit.requestSerialize(req), patch),
      (b) => sync.Submit.responseDeserialize(b) as SubmitResponse__Output),
    report: (req, patch = []) => call('/pwsync.v1.PasswordSync/Report', patchBytes(sync.Report.requestSerialize(req), patch),
      (b) => sync.Report.responseDeserialize(b) as ReportResponse__Output),
    close: () => client.close(),
  };
}
