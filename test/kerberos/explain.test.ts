import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadKerberos } from '../../proto/kerberos.ts';
import {
  describeSkew, explainAcceptorFailure, explainInitiatorFailure, gssDetail, spnOf, type AcceptorContext, type InitiatorContext,
} from '../../proto/kerberos-explain.ts';

/**
 * The texts an admin reads for failures the MIT library reports in words (the strings below are
 * MIT krb5 1.20's, as seen against a real KDC): each names the principal or SPN and the fix. The
 * faults themselves are produced for real in auth.test.ts and e2e.test.ts.
 */
const GSS = 'Unspecified GSS failure.  Minor code may provide more information: ';
const NOCRED = 'No credentials were supplied, or the credentials were unavailable or inaccessible: ';
const hubTimeMs = Date.UTC(2026, 0, 1, 12, 0, 0);
const acceptor = (over: Partial<AcceptorContext> = {}): AcceptorContext => ({ service: 'PWSYNC@Hub.Example.com', peer: '10.0.0.5:50000', hubTimeMs, ...over });
const initiator = (over: Partial<InitiatorContext> = {}): InitiatorContext => ({
  service: 'PWSYNC@hub.example.com', principal: 'DC1$@EXAMPLE.COM', keytab: '/etc/pwsync/dc1.keytab', hubAddress: 'hub.example.com:7443', ...over,
});

test('the SPN of a GSS host-based name, and the minor status without the GSS boilerplate', () => {
  assert.equal(spnOf('PWSYNC@Hub.Example.com'), 'PWSYNC/hub.example.com');
  assert.equal(gssDetail(`${GSS}Request is a replay`), 'Request is a replay');
  assert.equal(gssDetail(`${NOCRED}Key table file 'x' not found`), 'Key table file \'x\' not found');
});

test('clock skew is told with its size and direction, the hub\'s time and the limit', () => {
  const behind = explainAcceptorFailure(`${GSS}Clock skew too great`, acceptor({ clientTimeMs: hubTimeMs - 600_400 }));
  assert.match(behind, /the notifier's clock is 600 s behind the hub's \(hub time 2026-01-01T12:00:00\.000Z\)/);
  assert.match(behind, /Kerberos allows 300 s/);
  assert.match(behind, /w32tm \/resync/);
  const ahead = explainAcceptorFailure(`${GSS}Clock skew too great`, acceptor({ clientTimeMs: hubTimeMs + 421_000 }));
  assert.match(ahead, /the notifier's clock is 421 s ahead of the hub's/);
  assert.match(explainAcceptorFailure(`${GSS}Clock skew too great`, acceptor()), /the notifier did not send its time/);
  assert.equal(describeSkew(200, hubTimeMs), 'the notifier\'s clock agrees with the hub\'s (hub time 2026-01-01T12:00:00.000Z)');
});

test('a ticket not yet valid means the hub\'s clock is behind; an expired one names both causes', () => {
  const early = explainAcceptorFailure(`${GSS}Ticket not yet valid`, acceptor({ clientTimeMs: hubTimeMs + 600_000 }));
  assert.match(early, /not valid yet by the hub's clock, so the hub's clock is behind the KDC's/);
  assert.match(early, /600 s ahead of the hub's/);
  const stale = explainAcceptorFailure(`${GSS}Ticket expired`, acceptor({ clientTimeMs: hubTimeMs + 2_000 }));
  assert.doesNotMatch(stale, /clock is/);
  assert.match(stale, /renew it \(kinit -k\), or give the notifier a keytab \(notifier\.kerberos\.keytab\)/);
  const skewed = explainAcceptorFailure(`${GSS}Ticket expired`, acceptor({ clientTimeMs: hubTimeMs - 900_000 }));
  assert.match(skewed, /900 s behind the hub's/);
});

test('a ticket for a key version the hub does not have yet: the notifier\'s ticket is older', () => {
  const m = explainAcceptorFailure(`${GSS}Request ticket server PWSYNC/hub.example.com@EXAMPLE.COM kvno 2 not found in keytab; ticket is likely out of date`, acceptor());
  assert.match(m, /has key version 2, older than the hub's keytab/);
  assert.match(m, /restart the notifier/);
});

test('an unknown failure is passed on whole, with the SPN', () => {
  assert.match(explainAcceptorFailure(`${GSS}Something new`, acceptor()), /Kerberos authentication for PWSYNC\/hub\.example\.com failed: Something new/);
  assert.match(explainInitiatorFailure(`${GSS}Something new`, initiator()), /DC1\$@EXAMPLE\.COM cannot get a Kerberos ticket for PWSYNC\/hub\.example\.com to call the hub at hub\.example\.com:7443: Something new/);
});

test('the notifier\'s side: wrong realm, no KDC, no credentials, an old key, clock, duplicate SPN', () => {
  const realm = explainInitiatorFailure(`${GSS}Server krbtgt/OTHER.EXAMPLE@EXAMPLE.COM not found in Kerberos database`, initiator());
  assert.match(realm, /maps to realm OTHER\.EXAMPLE, which the KDC of EXAMPLE\.COM does not trust/);
  assert.match(realm, /\[domain_realm\]/);
  const noKdc = explainInitiatorFailure(`${NOCRED}Cannot find KDC for realm "EXAMPLE.COM"`, initiator());
  assert.match(noKdc, /cannot find a KDC for realm EXAMPLE\.COM: add the realm's KDCs under \[realms\]/);
  const unreachable = explainInitiatorFailure(`${NOCRED}Cannot contact any KDC for realm 'EXAMPLE.COM'`, initiator());
  assert.match(unreachable, /cannot reach a KDC.*the change stays queued/);
  const none = explainInitiatorFailure(`${NOCRED}No Kerberos credentials available (default cache: MEMORY:pwsync)`, initiator({ keytab: '/nonexistent/dc1.keytab' }));
  assert.match(none, /DC1\$@EXAMPLE\.COM has no Kerberos credentials: the keytab \/nonexistent\/dc1\.keytab \(notifier\.kerberos\.keytab\) does not exist/);
  const unreadable = explainInitiatorFailure(`${NOCRED}No Kerberos credentials available (default cache: MEMORY:pwsync)`, initiator({ keytab: '/' }));
  assert.match(unreadable, /check that the keytab exists, is readable/);
  const kinit = explainInitiatorFailure(`${NOCRED}No Kerberos credentials available (default cache: FILE:/tmp/cc)`, initiator({ keytab: undefined, ccache: 'FILE:/tmp/cc' }));
  assert.match(kinit, /run kinit for the DC's machine account into FILE:\/tmp\/cc, or set notifier\.kerberos\.keytab/);
  const oldKey = explainInitiatorFailure(`${NOCRED}Preauthentication failed`, initiator());
  assert.match(oldKey, /the key in notifier\.kerberos\.keytab \/etc\/pwsync\/dc1\.keytab is not the account's current key/);
  const clock = explainInitiatorFailure(`${NOCRED}Clock skew too great in KDC reply`, initiator());
  assert.match(clock, /this DC's clock differs from the KDC's by more than 300 s/);
  const twice = explainInitiatorFailure(`${GSS}Principal has multiple entries in Kerberos database`, initiator());
  assert.match(twice, /registered on more than one account: `setspn -X` lists duplicates/);
  const unknownClient = explainInitiatorFailure(`${NOCRED}Client 'DC9$@EXAMPLE.COM' not found in Kerberos database`, initiator());
  assert.match(unknownClient, /the KDC knows no account DC9\$@EXAMPLE\.COM: set notifier\.kerberos\.principal/);
});

test('without the kerberos package, the error says how to get it back (npm install, not npm rebuild)', async () => {
  await assert.rejects(loadKerberos('pwsync-no-such-kerberos-package'), (e: Error) => {
    assert.match(e.message, /`kerberos` package is not installed/);
    assert.match(e.message, /apt-get install -y libkrb5-dev g\+\+ make python3/);
    assert.match(e.message, /run `npm install` again/);
    assert.match(e.message, /not `npm rebuild`/);
    return true;
  });
});
