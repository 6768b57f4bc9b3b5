import type { Broker } from '../core/broker.ts';
import type { DomainConfig } from '../config/schema.ts';
import { describeError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { CallerIdentity } from '../proto/auth.ts';
import type { ReportRequest__Output } from '../proto/generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse } from '../proto/generated/pwsync/v1/ReportResponse.ts';
import type { SubmitRequest__Output } from '../proto/generated/pwsync/v1/SubmitRequest.ts';
import { createDcAuthorizer, type DcAuthorizer, type SpnOwners } from './dc-check.ts';
import { createReportHandler, DcRegistry } from './dc-registry.ts';

/**
 * The hub's side of its domains, in one piece for startHub: the DC check (the Ingest's
 * authorizer), the SPN lookup for the Kerberos check, the Report call, liveness from submits, and
 * the watch for DCs that stopped reporting.
 */
export interface DomainSide {
  authorizer: DcAuthorizer;
  registry: DcRegistry;
  /** Present when some domain has a directory. */
  lookupSpn?: (spn: string) => Promise<SpnOwners>;
  report: (req: ReportRequest__Output, caller: CallerIdentity, signal?: AbortSignal) => Promise<ReportResponse>;
  /** Records that the caller's DCs submitted (call after the changes were acknowledged). Never throws. */
  submitted(req: SubmitRequest__Output, caller: CallerIdentity): Promise<void>;
  stop(): Promise<void>;
}

/** `keyIds`: the hub's keys (hex, current first), answered to each report. */
export async function startDomainSide(config: { hub: { clockTolerance: number }; domains: readonly DomainConfig[]; baseDir: string }, broker: Broker, log: Logger, keyIds: readonly string[] = []): Promise<DomainSide> {
  const authorizer = createDcAuthorizer({ domains: config.domains, baseDir: config.baseDir, log: log.child({ component: 'dc-check' }) });
  const registryLog = log.child({ component: 'dcs' });
  const registry = await DcRegistry.open(broker, registryLog);
  const watch = registry.watchSilence(config.domains);
  return {
    authorizer,
    registry,
    ...(config.domains.some((d) => d.directory) ? { lookupSpn: (spn: string) => authorizer.lookupSpn(spn) } : {}),
    report: createReportHandler({ domains: config.domains, keyIds, authorizer, registry, log: registryLog, clockToleranceMs: config.hub.clockTolerance }),
    submitted: async (req, caller) => {
      try {
        await registry.recordSubmit(config.domains, req.notifierId, req.changes, caller);
      } catch (e) {
        registryLog.warn({ err: describeError(e) }, 'cannot record which DC submitted');
      }
    },
    stop: async () => {
      watch.stop();
      await authorizer.close();
    },
  };
}
