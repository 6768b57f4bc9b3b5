import assert from 'node:assert/strict';
import net from 'node:net';
import { PwsyncError } from '../../core/errors.ts';
import { LdapDirectory, LdapError } from '../../core/ldap.ts';
import { Secret } from '../../core/secret.ts';

/** What the directory tests use to prove a landing: the user's own bind, and faults on the wire. */

/**
 * A simple bind as the user over TLS on its own connection: true when the password works, false
 * on invalidCredentials (49); anything else throws. `password` is copied, never wiped here.
 */
export async function bindsWith(to: { url: string; ca: string; serverName?: string }, bindDn: string, password: Buffer): Promise<boolean> {
  const d = new LdapDirectory({
    url: to.url, startTls: false, ca: to.ca, bindDn, password: Secret.adopt(Buffer.from(password)), timeoutMs: 10_000,
    ...(to.serverName ? { serverName: to.serverName } : {}),
  });
  try {
    await d.use(async () => undefined);
    return true;
  } catch (e) {
    if (e instanceof LdapError && (e.cause as { code?: unknown } | undefined)?.code === 49) return false;
    throw e;
  } finally {
    await d.close();
  }
}

/** The PwsyncError a promise rejects with; fails the test when it resolves. */
export async function refusal(p: Promise<unknown>): Promise<PwsyncError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PwsyncError, `a PwsyncError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a refusal');
}

/**
 * A TCP relay to a directory's port that, once armed, swallows the next answer from the server and
 * cuts the connection: the request reached the server, its response never reaches the connector.
 */
export async function lossyRelay(port: number): Promise<{ port: number; arm(): void; close(): Promise<void> }> {
  let armed = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (armed) {
        armed = false;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(d);
    });
    const end = (): void => { client.destroy(); upstream.destroy(); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: () => { armed = true; },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
