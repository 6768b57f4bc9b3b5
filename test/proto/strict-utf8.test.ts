import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pwsyncV1, utf8Checker } from '../../proto/service.ts';
import { patchBytes } from '../lib/raw-grpc.ts';

/** The pass over request bytes that names string fields which are not UTF-8 (proto/strict-utf8.ts). */

const sync = pwsyncV1().PasswordSync.service;
const account = (sam: string) => ({ samAccountName: sam, objectGuid: 'g', objectSid: 'S-1-5', userPrincipalName: 'u@x', distinguishedName: 'CN=x' });
const change = (sam: string, sourceDc = 'dc1') => ({
  changeId: Buffer.alloc(16, 1), domain: 'corp.example', sourceDc, account: account(sam),
  changeTimeMs: Number.MAX_SAFE_INTEGER, sealedPassword: Buffer.from([0xff, 0xfe, 0xc0]),
});

test('valid UTF-8 everywhere, and invalid bytes in a bytes field (sealed_password, change_id), name nothing', () => {
  const bytes = sync.Submit.requestSerialize({ notifierId: 'n', changes: [change('alice'), change('Jürgen 😀')] });
  assert.deepEqual(utf8Checker().check(bytes, 'pwsync.v1.SubmitRequest'), []);
});

test('each invalid string is named by its path and the index of the change it is in', () => {
  const bytes = patchBytes(sync.Submit.requestSerialize({ notifierId: 'n#1', changes: [change('a'), change('b#b', 'dc#2'), change('c')] }), [
    ['n#1', Buffer.from([0x6e, 0xff, 0x31])],
    ['b#b', Buffer.from([0x62, 0xc3, 0x62])],
    ['dc#2', Buffer.from([0x64, 0x63, 0xed, 0x32])],
  ]);
  assert.deepEqual(utf8Checker().check(bytes, 'pwsync.v1.SubmitRequest'), [
    { path: 'notifier_id', top: 'notifier_id' },
    { path: 'changes[1].source_dc', top: 'changes', item: 1 },
    { path: 'changes[1].account.sam_account_name', top: 'changes', item: 1 },
  ]);
});

test('overlong encodings and UTF-16 surrogates are not UTF-8 either; an unknown field is skipped', () => {
  const overlong = patchBytes(sync.Report.requestSerialize({ domain: 'x/#', sourceDc: 'dc1', notices: [] }), [['x/#', Buffer.from([0x78, 0xc0, 0xaf])]]);
  assert.deepEqual(utf8Checker().check(overlong, 'pwsync.v1.ReportRequest').map((i) => i.path), ['domain']);
  const surrogate = patchBytes(sync.Report.requestSerialize({ domain: 'corp', sourceDc: 'd###', notices: [] }), [['d###', Buffer.from([0x64, 0xed, 0xa0, 0x80])]]);
  assert.deepEqual(utf8Checker().check(surrogate, 'pwsync.v1.ReportRequest').map((i) => i.path), ['source_dc']);
  // Field 99, length-delimited, holding invalid bytes: not in the descriptor, so not a string the hub reads.
  const unknown = Buffer.concat([sync.Report.requestSerialize({ domain: 'corp' }), Buffer.from([0x9a, 0x06, 0x02, 0xff, 0xff])]);
  assert.deepEqual(utf8Checker().check(unknown, 'pwsync.v1.ReportRequest'), []);
});

test('a string after a 64-bit varint (a notice\'s change time) is still checked', () => {
  const notice = { noticeId: Buffer.alloc(16), account: account('a'), changeTimeMs: Number.MAX_SAFE_INTEGER, target: 't#', reason: 'r' };
  const bytes = patchBytes(sync.Report.requestSerialize({ domain: 'corp', sourceDc: 'dc1', notices: [notice, { ...notice, target: 'ok' }] }), [['t#', Buffer.from([0x74, 0xf8])]]);
  assert.deepEqual(utf8Checker().check(bytes, 'pwsync.v1.ReportRequest'), [{ path: 'notices[0].target', top: 'notices', item: 0 }]);
});
