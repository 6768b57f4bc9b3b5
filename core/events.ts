/**
 * The event catalogue. 6919–6928 keep the meaning they have in the reference product (MIIS 2003
 * password synchronization); 6940 and up are pwsync's own. `retryable` is what the dispatcher and
 * the notifier obey; `fix` is what `pwsync status` prints next to a failure.
 */
export type Severity = 'info' | 'warning' | 'error';

interface EventDef {
  readonly severity: Severity;
  readonly retryable: boolean;
  readonly text: string;
  readonly fix: string;
}

export const EVENTS = {
  6919: {
    severity: 'warning', retryable: false,
    text: 'not applied: the change is older than one already applied for that object',
    fix: 'nothing to do: a newer password is already in place',
  },
  6921: {
    severity: 'error', retryable: false,
    text: 'password management is not enabled on the target connector',
    fix: 'set `enabled: true` on the connector in the hub YAML, then `pwsync retry`',
  },
  6922: {
    severity: 'error', retryable: false,
    text: 'password management is not configured on the target connector',
    fix: 'configure a password extension (`extension:`) for the connector',
  },
  6923: {
    severity: 'error', retryable: false,
    text: 'the joined object does not exist in the connected system',
    fix: 'check the join: the object was deleted or renamed in the target',
  },
  6927: {
    severity: 'error', retryable: false,
    text: 'the password does not satisfy the target system\'s password policy',
    fix: 'align the domain password policy with the target\'s, or relax the target\'s policy',
  },
  6928: {
    severity: 'error', retryable: false,
    text: 'the connector\'s password extension does not support set operations',
    fix: 'implement setPassword in the extension, or point the connector at one that does',
  },
  6940: {
    severity: 'warning', retryable: true,
    text: 'set-operation failed and will be retried',
    fix: 'nothing yet: it is retried at the connector\'s retry interval',
  },
  6941: {
    severity: 'error', retryable: false,
    text: 'set-operation failed: retries exhausted',
    fix: 'fix the target, then `pwsync retry` the operation',
  },
  6942: {
    severity: 'error', retryable: false,
    text: 'set-operation failed: the target refused the service account or its rights',
    fix: 'grant the connector\'s account the right named in the message, then `pwsync retry`',
  },
  6943: {
    severity: 'warning', retryable: true,
    text: 'delivery to a target failed and will be retried',
    fix: 'check that the target hub is running and reachable; the queue keeps the change',
  },
  6944: {
    severity: 'warning', retryable: false,
    text: 'the oldest queued change for a target is older than the warning age',
    fix: 'check that the target hub is running, reachable and enabled',
  },
  6945: {
    severity: 'error', retryable: false,
    text: 'a queued change expired before it could be delivered',
    fix: 'the password change was lost for that target: ask the person to change it again',
  },
  6946: {
    severity: 'error', retryable: false,
    text: 'a change was rejected: it could not be authenticated or read',
    fix: 'check that the notifier seals for the hub\'s current public key',
  },
  6947: {
    severity: 'info', retryable: false,
    text: 'the password was set in the connected system',
    fix: 'nothing to do',
  },
  6948: {
    severity: 'info', retryable: false,
    text: 'the account has no joined object in the target connector',
    fix: 'join the account (join rules or an admin match) if it should be synchronized',
  },
  6949: {
    severity: 'error', retryable: false,
    text: 'the change came for a domain the hub does not serve',
    fix: 'add the domain under `domains:` in the hub YAML, or point the notifier elsewhere',
  },
  6950: {
    severity: 'error', retryable: false,
    text: 'the connected system cannot store the value (a field too narrow, an attribute it lacks)',
    fix: 'widen the field or fix the extension\'s attribute setting, then `pwsync retry`',
  },
  6951: {
    severity: 'error', retryable: false,
    text: 'the connector requires a secure connection and its channel is not encrypted',
    fix: 'use ldaps:// or StartTLS with a CA file, or (not recommended) set requireSecureConnection: false',
  },
  6952: {
    severity: 'warning', retryable: false,
    text: 'the hub authenticates no caller (no hub.kerberos, no hub.tls.clientCa): anyone who reaches its port and trusts its CA can set passwords',
    fix: 'set hub.tls.clientCa (client certificates from `pwsync tls client`) or hub.kerberos, and a directory for each domain, so that only domain controllers are heard; allowed without them only on loopback or with hub.unauthenticatedCallers',
  },
  6953: {
    severity: 'error', retryable: false,
    text: 'a caller was refused: it is not a writable domain controller of the domain it reports',
    fix: 'point the notifier at this hub only from that domain\'s DCs (machine account DC$ in Domain Controllers); allowReadOnlyDCs for RODCs',
  },
  6954: {
    severity: 'error', retryable: true,
    text: 'Kerberos authentication between notifier and hub failed',
    fix: 'the message names the principal, the SPN and the fix (SPN, keytab, clock, realm); the change stays queued at the notifier',
  },
  6955: {
    severity: 'warning', retryable: false,
    text: 'a domain controller that reported to the hub has stopped reporting',
    fix: 'check the notifier on that DC (service running, capture registered, hub reachable)',
  },
  6956: {
    severity: 'info', retryable: false,
    text: 'a domain controller reports to the hub (first time, or again after being silent)',
    fix: 'nothing to do',
  },
  6957: {
    severity: 'error', retryable: true,
    text: 'the scope of a change could not be decided (group missing or directory lookup failed); the change waits, sealed',
    fix: 'check notifier.directory and the target\'s scope groups; the change is sent or filtered once the lookup works',
  },
  6958: {
    severity: 'info', retryable: false,
    text: 'a change was not sent to a target: the account is out of its scope',
    fix: 'add the account to the target\'s inclusion group (and not to its exclusion group) if it should be synchronized',
  },
  6959: {
    severity: 'warning', retryable: true,
    text: 'the capture source exited and is restarted after a backoff',
    fix: 'read the capture source\'s last output in the event; changes are replayed from where it stopped',
  },
  6960: {
    severity: 'error', retryable: false,
    text: 'the hub\'s Kerberos set-up is wrong: notifiers cannot authenticate',
    fix: 'the message names the SPN, the account and the fix (register the SPN once, export a keytab with the current kvno and AES keys)',
  },
  6961: {
    severity: 'warning', retryable: false,
    text: 'the secure connection rule is off for a connector: passwords may travel to it unencrypted',
    fix: 'use ldaps:// or StartTLS with a CA file and remove requireSecureConnection: false',
  },
  6962: {
    severity: 'warning', retryable: false,
    text: 'test-only envelope suites are enabled (PWSYNC_TEST_ONLY_SUITES=1): envelopes with a weak key wrap are accepted',
    fix: 'never in production: unset PWSYNC_TEST_ONLY_SUITES and remove RSA keys from hub.keys and targets[].publicKey',
  },
  6963: {
    severity: 'error', retryable: false,
    text: 'a change captured by the filter DLL was put aside: it cannot be queued for a target',
    fix: 'the event names the reason (unknown or disabled target, stale key, bad frame); fix it (`pwsync notifier install` rewrites the DLL settings), then move the file from the spool folder\'s aside (or bad) folder back into new',
  },
  6964: {
    severity: 'error', retryable: false,
    text: 'capture on this Windows domain controller is not working: the filter DLL is not registered, not loaded, or disabled itself',
    fix: 'run `pwsync notifier install` and reboot the DC; the event names what is missing (Notification Packages, status file, the DLL\'s own reason)',
  },
  6970: {
    severity: 'warning', retryable: true,
    text: 'the broker (NATS JetStream) cannot be reached or has no leader right now; the request is retried',
    fix: 'check that the NATS servers in broker.servers are running and that a majority of the cluster is up',
  },
  6971: {
    severity: 'error', retryable: false,
    text: 'the broker (NATS JetStream) refused the hub: credentials, permissions, or missing streams',
    fix: 'the message names what to fix: broker.credentials, the NATS user\'s permissions, or `pwsync broker init`',
  },
  6972: {
    severity: 'warning', retryable: true,
    text: 'the connector worker of a remote connector is not connected or did not answer in time; the set-operation is retried',
    fix: 'start `pwsync worker --config FILE --connector NAME` next to the target (it connects out to NATS); `pwsync status --workers` shows whether it is connected',
  },
  6973: {
    severity: 'error', retryable: false,
    text: 'a connector worker refused what it was given, or NATS refused the worker: another connector\'s operation, a password not sealed for its key, or credentials without rights to its connector\'s subjects',
    fix: 'give each worker its own connector\'s NATS user and its own key pair; the hub\'s connection.publicKey for the connector must be that worker\'s public key',
  },
  6974: {
    severity: 'warning', retryable: false,
    text: 'a change was refused: its change time lies beyond this clock plus the clock tolerance (the DC\'s clock is ahead, or the time is corrupt)',
    fix: 'the event names the DC and the skew: set that DC\'s clock right (NTP), then have the person change the password again; raise hub.clockTolerance / notifier.clockTolerance only for a known, lasting skew',
  },
  6975: {
    severity: 'error', retryable: false,
    text: 'one record of a batch could not be handled and was set aside; the others in its batch were settled',
    fix: 'the event names the record (change, set-operation or notice) and the reason; the person changes the password again if it was a password change',
  },
  6976: {
    severity: 'info', retryable: false,
    text: 'an admin cleared the change time last applied to a target object: the next change for it is applied whatever its time',
    fix: 'nothing: the audit trail (action latest-clear) says who did it and what was cleared',
  },
  6979: {
    severity: 'error', retryable: false,
    text: 'an identifier was refused: an account name, DN, domain or host name holds a control character, or a request field is not valid UTF-8',
    fix: 'the message names the field and the character; fix what sent it (the hook script, the capture, a notifier built from another proto) to send names as the directory holds them, in UTF-8',
  },
  6980: {
    severity: 'warning', retryable: true,
    text: 'a caller went away (cancelled, or past its deadline) before the hub answered: the hub stopped the call\'s remaining work',
    fix: 'nothing if rare: the notifier sends again what was not acknowledged; if frequent, the hub stores too slowly (check the broker) or the notifier\'s timeout is too short',
  },
  6982: {
    severity: 'error', retryable: false,
    text: 'another hub holds this hub\'s data folder (hub.dataDir): this hub does not start',
    fix: 'stop the hub whose PID the message names, or give this hub its own hub.dataDir; two hubs on one embedded broker apply every operation twice (share NATS JetStream to run several)',
  },
  6983: {
    severity: 'info', retryable: false,
    text: 'a set-operation was re-queued: by an admin (`pwsync retry`), or by the hub because nothing would have moved it',
    fix: 'nothing to do: it is applied as a new attempt; `pwsync status --operations` shows it',
  },
  6984: {
    severity: 'info', retryable: false,
    text: 'a failed set-operation was re-queued automatically: its connector answered again (retry.failedWhenReachable)',
    fix: 'nothing to do: the target is back and the operation is applied again',
  },
  6977: {
    severity: 'error', retryable: true,
    text: 'a caller\'s TLS client certificate was refused: not from the hub\'s client CA, expired, absent, or naming no one domain controller',
    fix: 'issue the DC its certificate from the CA in hub.tls.clientCa (`pwsync tls client --ca-dir DIR --dc HOST --out DIR`) and set targets[].tls.cert and key; the change stays queued at the notifier',
  },
  6978: {
    severity: 'warning', retryable: false,
    text: 'a TLS certificate that callers are authenticated with (a DC\'s client certificate, or the hub\'s client CA) expires soon or has expired',
    fix: 'renew a DC\'s certificate with `pwsync tls client --ca-dir DIR --dc HOST --out DIR --force` and restart its notifier; a client CA near its end: `pwsync tls generate` a new one and issue every DC a certificate from it',
  },
  6987: {
    severity: 'error', retryable: true,
    text: 'the notifier seals for a public key the target hub does not open: that target\'s changes are held at the notifier, not sent',
    fix: 'give the notifier the hub\'s current public key (targets[].publicKey) and restart it, or put the key back in the hub\'s keys: if it was retired too early; held changes are then sent (README: key rotation)',
  },
  6988: {
    severity: 'warning', retryable: true,
    text: 'the hub refused a change as sealed for a key it does not open; the notifier keeps it (parked), it is not dropped',
    fix: 'put the key the change was sealed for back in the hub\'s keys: (after the current one) and restart the hub: parked changes are sent at the next report',
  },
  6989: {
    severity: 'warning', retryable: false,
    text: 'the notifier seals for a retired key of the hub: accepted while the hub keeps that key',
    fix: 'give the notifier the hub\'s current public key (targets[].publicKey) and restart it before the hub drops the retired key',
  },
} as const satisfies Record<number, EventDef>;

export type EventId = keyof typeof EVENTS;

export function isEventId(n: number): n is EventId {
  return Object.hasOwn(EVENTS, n);
}
