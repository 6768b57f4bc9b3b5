import path from 'node:path';
import { controlCharacterIn } from '../core/identifiers.ts';
import { allowedCharactersPattern } from '../core/policy.ts';
import { isWindowsPipe } from './paths.ts';
import { parseDuration } from '../core/duration.ts';
import { UNAUTHENTICATED_CALLERS } from './schema.ts';
import { pathText, type ConfigIssue, type ConfigPath } from './issues.ts';
import type { YamlSource } from './source.ts';

/**
 * Rules the schema cannot say: names that must be unique, rules that repeat, settings that
 * contradict each other. They read the defaulted (not yet decoded) value and skip anything of the
 * wrong shape, since the schema check has reported that already.
 */
export function hubSemanticIssues(src: YamlSource, config: unknown, baseDir: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const root = asRecord(config);
  issues.push(...duplicates(src, asArray(root?.['domains']), ['domains'], 'name', 'domain', true));
  asArray(root?.['domains']).forEach((d, i) => issues.push(...identifierIssues(src, ['domains', i, 'name'], asRecord(d)?.['name'])));
  issues.push(...duplicates(src, asArray(asRecord(root?.['hub'])?.['keys']).map((k) => ({ key: k })), ['hub', 'keys'], 'key', 'key file', false, true));
  const connectors = asArray(root?.['connectors']);
  issues.push(...duplicates(src, connectors, ['connectors'], 'name', 'connector', true));
  connectors.forEach((c, i) => issues.push(...connectorIssues(src, asRecord(c), ['connectors', i])));
  issues.push(...sharedFiles(src, connectors, baseDir));
  issues.push(...brokerIssues(src, asRecord(root?.['broker'])));
  issues.push(...remoteIssues(src, root));
  asArray(root?.['domains']).forEach((d, i) => {
    issues.push(...ldapUrlIssues(src, asRecord(asRecord(d)?.['directory']), ['domains', i, 'directory'], 'a directory is always reached over an encrypted connection'));
  });
  issues.push(...callerIssues(src, asRecord(root?.['hub']), asArray(root?.['domains'])));
  return issues;
}

/** Whether a hub.listen (host:port) accepts connections from this machine only: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackListen(listen: string): boolean {
  const host = /^\[([^\]]+)\]:\d+$/.exec(listen)?.[1] ?? /^([^:]+):\d+$/.exec(listen)?.[1] ?? '';
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^(0{0,4}:){2,7}0{0,3}1$/.test(host) || host.toLowerCase() === 'localhost';
}

/**
 * Who may call the hub. A caller is authenticated by Kerberos, by a client certificate from
 * hub.tls.clientCa, or both; either way it is heard only once the DC check over that domain's
 * directory passed. With neither, the hub hears anyone who reaches its port: allowed on loopback
 * (the demo) or when hub.unauthenticatedCallers says so in words.
 */
function callerIssues(src: YamlSource, hub: Record<string, unknown> | undefined, domains: unknown[]): ConfigIssue[] {
  if (!hub) return [];
  const issues: ConfigIssue[] = [];
  const kerberos = asRecord(hub['kerberos']) !== undefined;
  const certificates = typeof asRecord(hub['tls'])?.['clientCa'] === 'string';
  const listen = typeof hub['listen'] === 'string' ? hub['listen'] : '127.0.0.1:7443';
  if (kerberos || certificates) {
    const by = kerberos && certificates ? 'hub.kerberos and hub.tls.clientCa are' : kerberos ? 'hub.kerberos is' : 'hub.tls.clientCa is';
    domains.forEach((d, i) => {
      if (asRecord(asRecord(d)?.['directory'])) return;
      const at: ConfigPath = ['domains', i];
      issues.push(src.issue(src.keyAt(at), at, `${by} set, but domain ${String(asRecord(d)?.['name'] ?? i)} has no directory: no DC of it could be checked, so all its notifiers would be refused`,
        'add directory: (an LDAPS URL of that domain, its CA and a read-only account) so the hub can check that callers are its domain controllers'));
    });
    if (hub['unauthenticatedCallers'] !== undefined) {
      const at: ConfigPath = ['hub', 'unauthenticatedCallers'];
      issues.push(src.issue(src.keyAt(at), at, `hub.unauthenticatedCallers is set, but ${by} set, so every caller is authenticated`, 'remove hub.unauthenticatedCallers'));
    }
    return issues;
  }
  if (isLoopbackListen(listen) || hub['unauthenticatedCallers'] === UNAUTHENTICATED_CALLERS) return issues;
  const at: ConfigPath = src.nodeAt(['hub', 'listen']) ? ['hub', 'listen'] : ['hub'];
  issues.push(src.issue(at.length > 1 ? src.valueAt(at) : src.keyAt(at), at,
    `the hub listens on ${listen}, beyond loopback, and authenticates no caller (no hub.kerberos, no hub.tls.clientCa): anyone who reaches the port and trusts the hub's CA could set any password of the served domains`,
    'authenticate the domain controllers: set hub.tls.clientCa (client certificates from `pwsync tls client --dc HOST`) or hub.kerberos (keytab, service, replayCache); '
    + `or listen on 127.0.0.1 only; or, knowingly, set hub.unauthenticatedCallers: ${UNAUTHENTICATED_CALLERS}`));
  return issues;
}

/** A connector worker's file: its connectors are real targets, and it only talks to NATS. */
export function workerSemanticIssues(src: YamlSource, config: unknown, baseDir: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const root = asRecord(config);
  issues.push(...duplicates(src, asArray(asRecord(root?.['worker'])?.['keys']).map((k) => ({ key: k })), ['worker', 'keys'], 'key', 'key file', false, true));
  const connectors = asArray(root?.['connectors']);
  issues.push(...duplicates(src, connectors, ['connectors'], 'name', 'connector', true));
  connectors.forEach((c, i) => {
    issues.push(...connectorIssues(src, asRecord(c), ['connectors', i]));
    if (asRecord(c)?.['kind'] === 'remote') {
      const at: ConfigPath = ['connectors', i, 'kind'];
      issues.push(src.issue(src.valueAt(at), at, 'a worker runs the real connector, not kind remote (that is how the hub names a connector its worker runs)',
        'write the target\'s own kind here (ldap, ad, postgresql, delimited…) with its connection settings'));
    }
  });
  issues.push(...sharedFiles(src, connectors, baseDir));
  const broker = asRecord(root?.['broker']);
  if (broker?.['kind'] !== 'nats') {
    const at: ConfigPath = broker && broker['kind'] !== undefined ? ['broker', 'kind'] : [];
    issues.push(src.issue(broker && broker['kind'] !== undefined ? src.valueAt(at) : src.keyAt(['worker']), at, 'a connector worker reaches hubs only through NATS, but broker.kind is not nats',
      'add broker: {kind: nats, servers: [tls://…], tls: {ca: PATH}, user: NAME, credentials: {fromFile: PATH}} with this worker\'s own NATS user'));
  }
  issues.push(...brokerIssues(src, broker));
  return issues;
}

/** A hub's connector of kind remote is run by a worker: it needs NATS, and its extension lives at the worker. */
function remoteIssues(src: YamlSource, root: Record<string, unknown> | undefined): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const nats = asRecord(root?.['broker'])?.['kind'] === 'nats';
  asArray(root?.['connectors']).forEach((c, i) => {
    const conn = asRecord(c);
    if (conn?.['kind'] !== 'remote') return;
    if (!nats) {
      const at: ConfigPath = ['connectors', i, 'kind'];
      issues.push(src.issue(src.valueAt(at), at, `connector ${String(conn['name'] ?? i)} is of kind remote, but the hub's broker is not NATS: its worker could not be reached`,
        'set broker.kind: nats with broker.servers (see "Connector workers" in the README), or give the connector its real kind'));
    }
    if (conn['extension'] !== undefined) {
      const at: ConfigPath = ['connectors', i, 'extension'];
      issues.push(src.issue(src.keyAt(at), at, `connector ${String(conn['name'] ?? i)} is run by a worker, so its password extension runs there`,
        'move extension: to the connector in the worker\'s YAML and remove it here'));
    }
  });
  return issues;
}

const NATS_ONLY = ['servers', 'tls', 'user', 'credentials'] as const;

/** `broker:` settings that only make sense together (the schema has checked each one's shape). */
function brokerIssues(src: YamlSource, broker: Record<string, unknown> | undefined): ConfigIssue[] {
  if (!broker) return [];
  const issues: ConfigIssue[] = [];
  const at = (...p: Array<string | number>): ConfigPath => ['broker', ...p];
  if (broker['kind'] !== 'nats') {
    for (const k of NATS_ONLY) {
      if (broker[k] === undefined) continue;
      issues.push(src.issue(src.keyAt(at(k)), at(k), `broker.${k} is a setting of the NATS broker, but broker.kind is ${String(broker['kind'] ?? 'sqlite')}`,
        `set \`kind: nats\` to use NATS JetStream, or remove ${k}`));
    }
    return issues;
  }
  const servers = asArray(broker['servers']).filter((v): v is string => typeof v === 'string');
  if (broker['servers'] === undefined) {
    issues.push(src.issue(src.valueAt(at('kind')), at('kind'), 'broker.kind is nats, but broker.servers is not set: the hub would not know where NATS is',
      'list the NATS servers, e.g. servers: [tls://nats1.example.com:4222, tls://nats2.example.com:4222, tls://nats3.example.com:4222]'));
  }
  const tls = asRecord(broker['tls']);
  servers.forEach((u, i) => {
    const host = /^[a-z]+:\/\/(\[[^\]]+\]|[^:]+):/.exec(u)?.[1] ?? '';
    if (u.startsWith('tls://') && !tls) {
      issues.push(src.issue(src.valueAt(at('servers', i)), at('servers', i), `${u} is a TLS server, but broker.tls.ca is not set: its certificate could not be verified`,
        'add tls: {ca: PATH} with the CA that signed the NATS servers\' certificates'));
    } else if (u.startsWith('nats://') && !tls && !/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(host)) {
      issues.push(src.issue(src.valueAt(at('servers', i)), at('servers', i), `${u} is plain NATS to another host: the credentials and every change would cross the network without TLS`,
        `write tls://${u.slice('nats://'.length)} and add tls: {ca: PATH}`));
    }
  });
  if (tls && (tls['cert'] === undefined) !== (tls['key'] === undefined)) {
    const has = tls['cert'] !== undefined ? 'cert' : 'key';
    const lacks = has === 'cert' ? 'key' : 'cert';
    issues.push(src.issue(src.keyAt(at('tls', has)), at('tls', has), `broker.tls.${has} is set without broker.tls.${lacks}`,
      `give both the client certificate and its key, or neither`));
  }
  if (broker['user'] !== undefined && broker['credentials'] === undefined) {
    issues.push(src.issue(src.valueAt(at('user')), at('user'), 'broker.user is set without broker.credentials: NATS would get a user and no password',
      'add credentials: {fromFile: PATH} with the user\'s password (a file of mode 0600)'));
  }
  return issues;
}

export function notifierSemanticIssues(src: YamlSource, config: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const root = asRecord(config);
  const targets = asArray(root?.['targets']);
  issues.push(...duplicates(src, targets, ['targets'], 'name', 'target', true));
  for (const k of ['domain', 'host']) issues.push(...identifierIssues(src, ['notifier', k], asRecord(root?.['notifier'])?.[k]));
  targets.forEach((t, i) => {
    const first = duration(asRecord(t)?.['retryInterval']);
    const max = duration(asRecord(t)?.['maxRetryInterval']);
    if (first !== undefined && max !== undefined && max < first) {
      const at: ConfigPath = ['targets', i, src.nodeAt(['targets', i, 'maxRetryInterval']) ? 'maxRetryInterval' : 'retryInterval'];
      issues.push(src.issue(src.valueAt(at), at, 'maxRetryInterval is shorter than retryInterval', 'make maxRetryInterval at least as long as retryInterval'));
    }
  });
  issues.push(...kerberosIssues(src, asRecord(root?.['notifier'])?.['kerberos'], targets));
  issues.push(...hookModeIssues(src, asRecord(asRecord(root?.['notifier'])?.['hook'])));
  issues.push(...ldapUrlIssues(src, asRecord(asRecord(root?.['notifier'])?.['directory']), ['notifier', 'directory'], 'a directory is always reached over an encrypted connection'));
  targets.forEach((t, i) => {
    const tls = asRecord(asRecord(t)?.['tls']);
    if (!tls || (tls['cert'] === undefined) === (tls['key'] === undefined)) return;
    const has = tls['cert'] !== undefined ? 'cert' : 'key';
    const at: ConfigPath = ['targets', i, 'tls', has];
    issues.push(src.issue(src.keyAt(at), at, `targets[].tls.${has} is set without targets[].tls.${has === 'cert' ? 'key' : 'cert'}`,
      'give both this DC\'s client certificate and its key (`pwsync tls client --dc HOST` writes them), or neither'));
  });
  if (!asRecord(asRecord(root?.['notifier'])?.['directory'])) {
    targets.forEach((t, i) => {
      if (!asRecord(asRecord(t)?.['scope'])) return;
      const at: ConfigPath = ['targets', i, 'scope'];
      issues.push(src.issue(src.keyAt(at), at, 'this target has a scope, but notifier.directory is not set: group membership cannot be checked',
        'add notifier.directory (an LDAPS URL of this DC, its CA, a read-only account and its password file)'));
    });
  }
  const queue = asRecord(asRecord(root?.['notifier'])?.['queue']);
  const warn = duration(queue?.['warnAge']);
  const max = duration(queue?.['maxAge']);
  if (warn !== undefined && max !== undefined && max <= warn) {
    const at: ConfigPath = ['notifier', 'queue', src.nodeAt(['notifier', 'queue', 'maxAge']) ? 'maxAge' : 'warnAge'];
    issues.push(src.issue(src.valueAt(at), at, 'queue.maxAge is not longer than queue.warnAge, so no warning comes before a change is dropped', 'make maxAge longer than warnAge (defaults: warnAge 1h, maxAge 72h)'));
  }
  return issues;
}

/** A domain or host name with a control character: hubs would refuse every change and report naming it (6979). */
function identifierIssues(src: YamlSource, at: ConfigPath, value: unknown): ConfigIssue[] {
  if (typeof value !== 'string') return [];
  const problem = controlCharacterIn({ [pathText(at)]: value });
  return problem ? [src.issue(src.valueAt(at), at, problem, 'write the name as DNS has it, without escapes such as \\n or \\0 in the quoted YAML string')] : [];
}

/**
 * Whoever can connect to the hook socket can queue a password change for any account: the
 * socket is for the notifier's account and, at most, a group the hook runs in.
 */
function hookModeIssues(src: YamlSource, hook: Record<string, unknown> | undefined): ConfigIssue[] {
  const mode = hook?.['mode'];
  const socket = hook?.['socket'];
  if (typeof mode !== 'string' || !/^0?[0-7]{3}$/.test(mode) || (typeof socket === 'string' && isWindowsPipe(socket))) return [];
  if ((parseInt(mode, 8) & 0o007) === 0) return [];
  const at: ConfigPath = ['notifier', 'hook', 'mode'];
  return [src.issue(src.valueAt(at), at, `hook.mode ${mode} lets every local user write to the hook socket, and so queue password changes for any account`,
    'use \'0600\' (the notifier\'s account only, the default) or \'0660\' (its group too); no bit for others')];
}

/** A target that authenticates with Kerberos needs this DC's credentials, from one source. */
function kerberosIssues(src: YamlSource, kerberos: unknown, targets: unknown[]): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const k = asRecord(kerberos);
  if (!k) {
    targets.forEach((t, i) => {
      if (!asRecord(asRecord(t)?.['kerberos'])) return;
      const at: ConfigPath = ['targets', i, 'kerberos'];
      issues.push(src.issue(src.keyAt(at), at, 'this target authenticates with Kerberos, but notifier.kerberos does not say which account this DC authenticates as',
        'add notifier.kerberos with keytab: the keytab holding this DC\'s machine account key (DC1$@REALM), e.g. from `samba-tool domain exportkeytab`'));
    });
    return issues;
  }
  const hasKeytab = typeof k['keytab'] === 'string';
  const hasCcache = typeof k['ccache'] === 'string';
  if (!hasKeytab && !hasCcache) {
    const at: ConfigPath = ['notifier', 'kerberos'];
    issues.push(src.issue(src.keyAt(at), at, 'notifier.kerberos names neither a keytab nor a credential cache', 'set keytab: the keytab with this DC\'s machine account key (tickets are renewed from it)'));
  } else if (hasKeytab && hasCcache) {
    const at: ConfigPath = ['notifier', 'kerberos', 'ccache'];
    issues.push(src.issue(src.valueAt(at), at, 'notifier.kerberos sets both keytab and ccache', 'keep keytab (tickets are renewed from it) and remove ccache'));
  }
  return issues;
}

function connectorIssues(src: YamlSource, c: Record<string, unknown> | undefined, at: ConfigPath): ConfigIssue[] {
  if (!c) return [];
  const issues: ConfigIssue[] = [];
  const rules = asArray(c['join']);
  const seen = new Map<string, number>();
  rules.forEach((r, j) => {
    const rule = asRecord(r);
    if (typeof rule?.['target'] !== 'string' || typeof rule['source'] !== 'string') return;
    const id = `${rule['target'].toLowerCase()}=${rule['source']}`;
    const first = seen.get(id);
    if (first === undefined) {
      seen.set(id, j);
      return;
    }
    const p = [...at, 'join', j];
    issues.push(src.issue(src.valueAt(p), p, `join rule ${rule['target']} = ${rule['source']} repeats rule ${first + 1} (line ${src.valueAt([...at, 'join', first]).line})`, 'remove the repeated rule'));
  });
  if (c['kind'] === 'fixed-width') issues.push(...fixedWidthIssues(src, c, rules, at));
  // A plain URL is the connector's own refusal (event 6951 at start), found by `config check` (hub/preflight.ts).
  if (c['kind'] === 'ldap' || c['kind'] === 'ad') issues.push(...ldapUrlIssues(src, asRecord(c['connection']), [...at, 'connection'], undefined));
  const policy = asRecord(c['policy']);
  const allowed = policy?.['allowedCharacters'];
  if (typeof allowed === 'string') {
    const pattern = allowedCharactersPattern(allowed);
    const p = [...at, 'policy', 'allowedCharacters'];
    if (typeof pattern === 'string') issues.push(src.issue(src.valueAt(p), p, pattern, 'write one bracketed character class, such as [\\x20-\\x7E] or [\\p{L}\\p{N}!-/]'));
  }
  const min = policy?.['minLength'];
  const max = policy?.['maxLength'];
  if (typeof min === 'number' && typeof max === 'number' && max < min) {
    const p = [...at, 'policy', 'maxLength'];
    issues.push(src.issue(src.valueAt(p), p, `policy.maxLength ${max} is below policy.minLength ${min}: no password could pass`, 'raise maxLength or lower minLength'));
  }
  return issues;
}

/**
 * The checks core/ldap.ts makes before it connects, made here so the file is refused where the
 * URL is written: a plain ldap:// URL (unless `plainRefused` is undefined: the admin allowed it),
 * and StartTLS asked of an ldaps:// URL.
 */
function ldapUrlIssues(src: YamlSource, conn: Record<string, unknown> | undefined, at: ConfigPath, plainRefused: string | undefined): ConfigIssue[] {
  const url = conn?.['url'];
  if (typeof url !== 'string') return [];
  const p = [...at, 'url'];
  if (/^ldaps:\/\//i.test(url) && conn?.['startTls'] === true) {
    const s = [...at, 'startTls'];
    return [src.issue(src.valueAt(s), s, 'startTls is for ldap:// URLs; an ldaps:// connection is encrypted from the start', 'remove startTls')];
  }
  if (!/^ldap:\/\//i.test(url) || conn?.['startTls'] === true || plainRefused === undefined) return [];
  const host = /^ldap:\/\/([^/:]+|\[[^\]]+\])/i.exec(url)?.[1] ?? 'host';
  return [src.issue(src.valueAt(p), p, `${url} is a plain LDAP connection: the bind password and every password set would travel in clear, and ${plainRefused}`,
    `write ldaps://${host}:636, or keep ldap:// and add startTls: true (with ca: the CA file)`)];
}

/** A fixed-width file's attributes are its declared fields, so anchor and join targets can be checked now. */
function fixedWidthIssues(src: YamlSource, c: Record<string, unknown>, rules: unknown[], at: ConfigPath): ConfigIssue[] {
  const conn = asRecord(c['connection']);
  const fields = asArray(conn?.['fields']).map((f) => asRecord(f)?.['name']).filter((n): n is string => typeof n === 'string');
  if (fields.length === 0) return [];
  const issues: ConfigIssue[] = [];
  issues.push(...duplicates(src, asArray(conn?.['fields']), [...at, 'connection', 'fields'], 'name', 'field', false));
  const anchor = conn?.['anchor'];
  if (typeof anchor === 'string' && !fields.includes(anchor)) {
    const written = src.nodeAt([...at, 'connection', 'anchor']) !== undefined;
    const p = [...at, 'connection', written ? 'anchor' : 'fields'];
    issues.push(src.issue(written ? src.valueAt(p) : src.keyAt(p), p, `the anchor \`${anchor}\` is not one of the fields`, `set \`anchor:\` to one of the field names: ${fields.join(', ')}`));
  }
  rules.forEach((r, j) => {
    const target = asRecord(r)?.['target'];
    if (typeof target === 'string' && !fields.includes(target)) {
      const p = [...at, 'join', j, 'target'];
      issues.push(src.issue(src.valueAt(p), p, `join target \`${target}\` is not one of the fields`, `use one of the field names: ${fields.join(', ')}`));
    }
  });
  return issues;
}

/** Two connectors committing the same file would overwrite each other's changes. */
function sharedFiles(src: YamlSource, connectors: unknown[], baseDir: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const owners = new Map<string, number>();
  connectors.forEach((c, i) => {
    const p = asRecord(asRecord(c)?.['connection'])?.['path'];
    if (typeof p !== 'string' || p === '') return;
    const file = path.resolve(baseDir, p);
    const first = owners.get(file);
    if (first === undefined) {
      owners.set(file, i);
      return;
    }
    const at = ['connectors', i, 'connection', 'path'];
    const firstName = String(asRecord(connectors[first])?.['name'] ?? `connectors[${first}]`);
    issues.push(src.issue(src.valueAt(at), at, `connector \`${firstName}\` uses the same file`, 'give each connector its own file; two connectors writing one file overwrite each other'));
  });
  return issues;
}

function duplicates(src: YamlSource, items: unknown[], at: ConfigPath, field: string, what: string, ignoreCase: boolean, whole = false): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    const v = asRecord(item)?.[field];
    if (typeof v !== 'string') return;
    const id = ignoreCase ? v.toLowerCase() : v;
    const prev = first.get(id);
    if (prev === undefined) {
      first.set(id, i);
      return;
    }
    const p = whole ? [...at, i] : [...at, i, field];
    const prevLine = src.valueAt(whole ? [...at, prev] : [...at, prev, field]).line;
    issues.push(src.issue(src.valueAt(p), p, `${what} \`${v}\` is defined twice (first at line ${prevLine})`, whole ? 'remove the repeated entry' : `rename or remove one of the two; each ${what} needs its own ${field}${ignoreCase ? ' (compared without regard to case)' : ''}`));
  });
  return issues;
}

function duration(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  try {
    return parseDuration(v);
  } catch {
    return undefined;
  }
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined;
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
