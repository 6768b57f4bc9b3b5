/*
 * pwsyncfilter.dll: the LSA notification package that captures a password change on a Windows DC.
 *
 * LSASS calls PasswordChangeNotify after each committed change. The password is sealed at once, per
 * enabled target, into the pwsync envelope (ARCHITECTURE.md, core/envelope.ts) with CNG, every
 * plaintext copy is wiped before any I/O, and the sealed frame goes to the notifier over a named pipe
 * within TimeBudgetMs, or else atomically into the spool folder. Nothing here may fail the change or
 * hold LSASS up: every export returns success, and a fault (SEH) disables the package instead of
 * taking the DC down. Settings: HKLM\SOFTWARE\pwsync (see notifier/windows/dll/README.md).
 *
 * Builds (scripts/build-windows.sh): production = clang SEH, no test suites; test = + suite 0xF1 and
 * test exports (-DPWSYNC_TEST_SUITES); nowipe = test + PWSYNC_NO_WIPE_FOR_TEST, the negative control
 * of the memory scan. MSVC:
 *   cl /nologo /LD /O2 /W4 /GS /DUNICODE pwsyncfilter.c /link /DEF:pwsyncfilter.def bcrypt.lib advapi32.lib
 */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0A00
#endif
#include <windows.h>
#include <ntsecapi.h>
#include <bcrypt.h>
#include <sddl.h>
#include <stdio.h>
#include "spool-common.h"

#if !defined(_MSC_VER) && !defined(PWSYNC_SEH)
#error "build with MSVC or clang -fms-extensions -DPWSYNC_SEH: without SEH a bad pointer from LSA would crash LSASS"
#endif
#if defined(PWSYNC_NO_WIPE_FOR_TEST) && !defined(PWSYNC_TEST_SUITES)
#error "PWSYNC_NO_WIPE_FOR_TEST is a test-build negative control only"
#endif

#ifndef STATUS_SUCCESS
#define STATUS_SUCCESS ((NTSTATUS)0x00000000L)
#endif
#ifndef BCRYPT_KDF_RAW_SECRET /* mingw gates it on NTDDI_WINBLUE; CNG has it from Windows 8.1 / 2012 R2 */
#define BCRYPT_KDF_RAW_SECRET L"TRUNCATE"
#endif
#ifdef __MINGW32__
WINBASEAPI BOOL WINAPI GetNamedPipeServerProcessId(HANDLE Pipe, PULONG ServerProcessId);
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __declspec(noinline)
#endif

#define PWSYNC_DLL_VERSION "0.1.0"
#ifdef PWSYNC_TEST_SUITES
#define BUILD_FLAVOUR "test"
#else
#define BUILD_FLAVOUR "prod"
#endif

#define SUITE_P256 1
#define SUITE_TEST_RSA 0xF1 /* test only: Wine's CNG cannot derive ECDH secrets */
#define MAX_TARGETS 16
#define MAX_NAME 64
#define MAX_BLOB 600
#define MAX_PW_BYTES 2048   /* UTF-16 bytes of a password: 1024 code units */
#define MAX_USER_BYTES 1024
#define POINT 65
#define NONCE 12
#define TAG 16

static const BYTE SALT[] = "pwsync/v1/ecdh-p256";
#define SALT_LEN (sizeof(SALT) - 1)

typedef struct {
  char name[MAX_NAME * 3 + 1]; /* UTF-8 */
  DWORD nameLen;
  DWORD suite;
  BYTE keyId[16];
  BYTE blob[MAX_BLOB]; /* suite 1: 04||X||Y; suite 0xF1: RSAPUBLICBLOB */
  DWORD blobLen;
} Target;

typedef struct {
  WCHAR pipe[256];
  WCHAR spool[MAX_PATH];
  DWORD budgetMs;
  char domain[256 * 3];
  DWORD domainLen;
  char host[256 * 3];
  DWORD hostLen;
  Target targets[MAX_TARGETS];
  DWORD nTargets;
  char refused[512]; /* why targets were left out, for the status file */
} Config;

static SRWLOCK g_cfgLock = SRWLOCK_INIT;
static SRWLOCK g_statusLock = SRWLOCK_INIT;
static Config g_cfg;
static BOOL g_ready;
static volatile LONG g_disabled;
static char g_disabledReason[200];
static ULONGLONG g_loadedAt;
static LONG g_failed;
static char g_lastFailure[240];
static BCRYPT_ALG_HANDLE g_ecdh, g_aes, g_hmac;
#ifdef PWSYNC_TEST_SUITES
static BCRYPT_ALG_HANDLE g_rsa;
#endif
static LARGE_INTEGER g_qpf;

/* What one call did: a test-build export reads it; production learns it from the status file. */
typedef struct {
  const char *stage;
  DWORD error;
  DWORD sealed;
  DWORD targets;
  const char *pipe;
  DWORD pipeError;
  BOOL spooled;
  const char *reason;
} CallResult;
#ifdef PWSYNC_TEST_SUITES
static SRWLOCK g_lastLock = SRWLOCK_INIT;
static char g_lastCall[400];
#endif

static void free_secret(void *p, SIZE_T n) {
#ifndef PWSYNC_NO_WIPE_FOR_TEST
  if (p) { SecureZeroMemory(p, n); HeapFree(GetProcessHeap(), 0, p); }
#else
  (void)p; (void)n; /* negative control: a freed block is reused at once, so keep it to be found */
#endif
}

static ULONGLONG unix_ms(void) {
  FILETIME ft;
  ULARGE_INTEGER u;
  GetSystemTimeAsFileTime(&ft);
  u.LowPart = ft.dwLowDateTime;
  u.HighPart = ft.dwHighDateTime;
  return (u.QuadPart - 116444736000000000ULL) / 10000ULL;
}

/* Microseconds on a monotonic clock (GetTickCount64 ticks in 15.6 ms steps on Windows). */
static ULONGLONG mono_us(void) {
  LARGE_INTEGER c;
  QueryPerformanceCounter(&c);
  return (ULONGLONG)(c.QuadPart / g_qpf.QuadPart) * 1000000ULL +
         (ULONGLONG)(c.QuadPart % g_qpf.QuadPart) * 1000000ULL / (ULONGLONG)g_qpf.QuadPart;
}

static DWORD ms_left(ULONGLONG deadlineUs) {
  ULONGLONG now = mono_us();
  return now >= deadlineUs ? 0 : (DWORD)((deadlineUs - now + 999) / 1000);
}

static void put16(BYTE *p, DWORD v) { p[0] = (BYTE)(v >> 8); p[1] = (BYTE)v; }
static void put32(BYTE *p, DWORD v) { p[0] = (BYTE)(v >> 24); p[1] = (BYTE)(v >> 16); p[2] = (BYTE)(v >> 8); p[3] = (BYTE)v; }
static void put64(BYTE *p, ULONGLONG v) { put32(p, (DWORD)(v >> 32)); put32(p + 4, (DWORD)v); }

/* ---------- status file: the fleet check reads it to learn the DLL is loaded and healthy ---------- */

static void write_status(void) {
  char text[1400];
  WCHAR tmp[MAX_PATH + 20], dst[MAX_PATH + 20];
  if (!g_cfg.spool[0]) return;
  AcquireSRWLockExclusive(&g_statusLock);
  int n = _snprintf(text, sizeof text - 1,
                    "version=%s\r\nbuild=%s\r\nloadedAt=%I64u\r\npid=%lu\r\nstate=%s\r\nreason=%s\r\ntargets=%lu\r\nfailed=%ld\r\nlastFailure=%s\r\n",
                    PWSYNC_DLL_VERSION, BUILD_FLAVOUR, g_loadedAt, GetCurrentProcessId(),
                    g_disabled ? "disabled" : "ok",
                    g_disabled ? g_disabledReason : g_cfg.refused, g_cfg.nTargets,
                    g_failed, g_lastFailure);
  if (n < 0) n = sizeof text - 1;
  text[n] = 0;
  path_join(tmp, g_cfg.spool, L"status.tmp", NULL);
  path_join(dst, g_cfg.spool, L"status.txt", NULL);
  HANDLE h = CreateFileW(tmp, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
  if (h != INVALID_HANDLE_VALUE) {
    DWORD w = 0;
    BOOL ok = WriteFile(h, text, (DWORD)n, &w, NULL) && w == (DWORD)n && FlushFileBuffers(h);
    CloseHandle(h);
    if (!ok || !MoveFileExW(tmp, dst, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) DeleteFileW(tmp);
  }
  ReleaseSRWLockExclusive(&g_statusLock);
}

static void disable(const char *why) {
  if (InterlockedCompareExchange(&g_disabled, 1, 0) == 0) {
    lstrcpynA(g_disabledReason, why, sizeof g_disabledReason);
    write_status();
  }
}

static void record(const CallResult *r) {
#ifdef PWSYNC_TEST_SUITES
  AcquireSRWLockExclusive(&g_lastLock);
  _snprintf(g_lastCall, sizeof g_lastCall - 1,
            "stage=%s error=0x%08lx sealed=%lu/%lu pipe=%s pipeError=%lu spooled=%d reason=%s",
            r->stage, r->error, r->sealed, r->targets, r->pipe ? r->pipe : "-", r->pipeError,
            r->spooled ? 1 : 0, r->reason ? r->reason : "-");
  g_lastCall[sizeof g_lastCall - 1] = 0;
  ReleaseSRWLockExclusive(&g_lastLock);
#endif
  if (r->reason) { /* a change that was not captured: count it and say why, never what */
    InterlockedIncrement(&g_failed);
    _snprintf(g_lastFailure, sizeof g_lastFailure - 1, "%I64u stage=%s error=0x%08lx %s",
              unix_ms(), r->stage, r->error, r->reason);
    g_lastFailure[sizeof g_lastFailure - 1] = 0;
    write_status();
  }
}

/* ---------- configuration ---------- */

static DWORD to_utf8(const WCHAR *w, int wlen, char *out, int cap, DWORD flags) {
  if (wlen == 0) { out[0] = 0; return 0; }
  int n = WideCharToMultiByte(CP_UTF8, flags, w, wlen, out, cap - 1, NULL, NULL);
  if (n <= 0) { out[0] = 0; return 0; }
  out[n] = 0;
  return (DWORD)n;
}

static void refuse(Config *c, const char *target, const char *why) {
  int used = lstrlenA(c->refused);
  _snprintf(c->refused + used, sizeof c->refused - 1 - used, "%starget %s: %s", used ? "; " : "", target, why);
  c->refused[sizeof c->refused - 1] = 0;
}

static void load_target(Config *c, HKEY targets, const WCHAR *wname) {
  HKEY k;
  char name[MAX_NAME * 3 + 1];
  Target *t = &c->targets[c->nTargets];
  DWORD enabled = 0, suite = 0, cb, nameLen = to_utf8(wname, lstrlenW(wname), name, sizeof name, 0);
  if (RegOpenKeyExW(targets, wname, 0, KEY_READ, &k) != ERROR_SUCCESS) { refuse(c, name, "cannot open its key"); return; }
  cb = sizeof enabled;
  RegGetValueW(k, NULL, L"Enabled", RRF_RT_REG_DWORD, NULL, &enabled, &cb);
  cb = sizeof suite;
  RegGetValueW(k, NULL, L"Suite", RRF_RT_REG_DWORD, NULL, &suite, &cb);
  if (!enabled) { RegCloseKey(k); return; }
  if (c->nTargets == MAX_TARGETS) { refuse(c, name, "more than 16 targets"); RegCloseKey(k); return; }
  cb = sizeof t->keyId;
  if (RegGetValueW(k, NULL, L"KeyId", RRF_RT_REG_BINARY, NULL, t->keyId, &cb) != ERROR_SUCCESS || cb != 16) {
    refuse(c, name, "KeyId is not 16 bytes"); RegCloseKey(k); return;
  }
  cb = sizeof t->blob;
  if (RegGetValueW(k, NULL, L"PublicKey", RRF_RT_REG_BINARY, NULL, t->blob, &cb) != ERROR_SUCCESS) {
    refuse(c, name, "PublicKey is missing or longer than 600 bytes"); RegCloseKey(k); return;
  }
  RegCloseKey(k);
  t->blobLen = cb;
  if (suite == SUITE_P256) {
    if (cb != POINT || t->blob[0] != 4) { refuse(c, name, "PublicKey is not a 65-byte uncompressed P-256 point"); return; }
  } else if (suite == SUITE_TEST_RSA) {
#ifdef PWSYNC_TEST_SUITES
    const BCRYPT_RSAKEY_BLOB *rb = (const BCRYPT_RSAKEY_BLOB *)t->blob;
    if (cb < sizeof *rb || rb->Magic != BCRYPT_RSAPUBLIC_MAGIC || rb->cbModulus > 512 ||
        sizeof *rb + rb->cbPublicExp + rb->cbModulus != cb) { refuse(c, name, "PublicKey is not an RSAPUBLICBLOB"); return; }
#else
    refuse(c, name, "suite 241 is test-only; this production build refuses it");
    return;
#endif
  } else {
    char why[64];
    _snprintf(why, sizeof why - 1, "unknown suite %lu", suite);
    why[sizeof why - 1] = 0;
    refuse(c, name, why);
    return;
  }
  lstrcpynA(t->name, name, sizeof t->name);
  t->nameLen = nameLen;
  t->suite = suite;
  c->nTargets++;
}

/* Reads HKLM\SOFTWARE\pwsync into c; returns NULL or why the package cannot run. */
static const char *load_config(Config *c) {
  HKEY k, tk;
  WCHAR w[256];
  DWORD cb, budget = 300;
  ZeroMemory(c, sizeof *c);
  if (RegOpenKeyExW(HKEY_LOCAL_MACHINE, L"SOFTWARE\\pwsync", 0, KEY_READ | KEY_WOW64_64KEY, &k) != ERROR_SUCCESS)
    return "registry key HKLM\\SOFTWARE\\pwsync is missing: run pwsync notifier install";
  reg_sz(k, L"PipeName", c->pipe, 256);
  reg_sz(k, L"SpoolDir", c->spool, MAX_PATH);
  cb = sizeof budget;
  RegGetValueW(k, NULL, L"TimeBudgetMs", RRF_RT_REG_DWORD, NULL, &budget, &cb);
  c->budgetMs = budget < 50 ? 50 : budget > 2000 ? 2000 : budget;
  reg_sz(k, L"Domain", w, 256);
  c->domainLen = to_utf8(w, lstrlenW(w), c->domain, sizeof c->domain, 0);
  if (RegOpenKeyExW(k, L"Targets", 0, KEY_READ, &tk) == ERROR_SUCCESS) {
    for (DWORD i = 0;; i++) {
      DWORD n = MAX_NAME;
      if (RegEnumKeyExW(tk, i, w, &n, NULL, NULL, NULL, NULL) != ERROR_SUCCESS) break;
      load_target(c, tk, w);
    }
    RegCloseKey(tk);
  }
  RegCloseKey(k);
  cb = 256;
  if (GetComputerNameExW(ComputerNameDnsFullyQualified, w, &cb)) c->hostLen = to_utf8(w, (int)cb, c->host, sizeof c->host, 0);
  if (!c->spool[0]) return "SpoolDir is not set";
  if (!c->domainLen) return "Domain is not set";
  if (!c->nTargets) return "no enabled target";
  return NULL;
}

static const char *open_providers(void) {
  if (!g_ecdh && BCryptOpenAlgorithmProvider(&g_ecdh, BCRYPT_ECDH_P256_ALGORITHM, NULL, 0) < 0) return "CNG has no ECDH_P256";
  if (!g_hmac && BCryptOpenAlgorithmProvider(&g_hmac, BCRYPT_SHA256_ALGORITHM, NULL, BCRYPT_ALG_HANDLE_HMAC_FLAG) < 0) return "CNG has no HMAC-SHA256";
  if (!g_aes) {
    if (BCryptOpenAlgorithmProvider(&g_aes, BCRYPT_AES_ALGORITHM, NULL, 0) < 0) return "CNG has no AES";
    if (BCryptSetProperty(g_aes, BCRYPT_CHAINING_MODE, (PUCHAR)BCRYPT_CHAIN_MODE_GCM, sizeof BCRYPT_CHAIN_MODE_GCM, 0) < 0) {
      BCryptCloseAlgorithmProvider(g_aes, 0);
      g_aes = NULL;
      return "CNG has no AES-GCM";
    }
  }
#ifdef PWSYNC_TEST_SUITES
  if (!g_rsa && BCryptOpenAlgorithmProvider(&g_rsa, BCRYPT_RSA_ALGORITHM, NULL, 0) < 0) return "CNG has no RSA";
#endif
  return NULL;
}

static NOINLINE void initialize_body(void) {
  Config *c = (Config *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof(Config));
  const char *why;
  DWORD err;
  char msg[200];
  if (!c) { disable("out of memory at initialization"); return; }
  why = load_config(c);
  AcquireSRWLockExclusive(&g_cfgLock);
  g_cfg = *c;
  ReleaseSRWLockExclusive(&g_cfgLock);
  HeapFree(GetProcessHeap(), 0, c);
  if (!why) why = open_providers();
  if (!why && g_cfg.spool[0] && (err = ensure_spool_dirs(g_cfg.spool))) {
    _snprintf(msg, sizeof msg - 1, "cannot create the spool folders (error %lu): its parent folder must exist", err);
    msg[sizeof msg - 1] = 0;
    why = msg;
  }
  if (why) {
    char full[200];
    _snprintf(full, sizeof full - 1, "%s%s%s", why, g_cfg.refused[0] ? "; " : "", g_cfg.refused);
    full[sizeof full - 1] = 0;
    disable(full);
    return;
  }
  g_ready = TRUE;
  write_status();
}

/* ---------- sealing ---------- */

static NTSTATUS hmac_sha256(const BYTE *key, ULONG keyLen, const BYTE *a, ULONG aLen, const BYTE *b, ULONG bLen, BYTE out[32]) {
  BCRYPT_HASH_HANDLE h = NULL;
  NTSTATUS s = BCryptCreateHash(g_hmac, &h, NULL, 0, (PUCHAR)key, keyLen, 0);
  if (s >= 0 && aLen) s = BCryptHashData(h, (PUCHAR)a, aLen, 0);
  if (s >= 0 && bLen) s = BCryptHashData(h, (PUCHAR)b, bLen, 0);
  if (s >= 0) s = BCryptFinishHash(h, out, 32, 0);
  if (h) BCryptDestroyHash(h);
  return s;
}

/* HKDF-SHA256 (RFC 5869) with one output block: L = 32. */
static NTSTATUS hkdf32(const BYTE *salt, ULONG saltLen, const BYTE *ikm, ULONG ikmLen, const BYTE *info, ULONG infoLen, BYTE out[32]) {
  BYTE prk[32];
  BYTE one = 1;
  BYTE *t = (BYTE *)HeapAlloc(GetProcessHeap(), 0, infoLen + 1);
  NTSTATUS s = t ? hmac_sha256(salt, saltLen, ikm, ikmLen, NULL, 0, prk) : (NTSTATUS)0xC0000017L;
  if (s >= 0) {
    if (infoLen) CopyMemory(t, info, infoLen);
    t[infoLen] = one;
    s = hmac_sha256(prk, 32, t, infoLen + 1, NULL, 0, out);
  }
  SecureZeroMemory(prk, sizeof prk);
  if (t) HeapFree(GetProcessHeap(), 0, t);
  return s;
}

static NTSTATUS aes_gcm(const BYTE key[32], const BYTE nonce[NONCE], const BYTE *aad, ULONG aadLen,
                        const BYTE *pt, ULONG ptLen, BYTE *ct, BYTE tag[TAG]) {
  BCRYPT_KEY_HANDLE k = NULL;
  BCRYPT_AUTHENTICATED_CIPHER_MODE_INFO ai;
  ULONG cb = 0;
  BYTE empty = 0;
  NTSTATUS s = BCryptGenerateSymmetricKey(g_aes, &k, NULL, 0, (PUCHAR)key, 32, 0);
  if (s < 0) return s;
  BCRYPT_INIT_AUTH_MODE_INFO(ai);
  ai.pbNonce = (PUCHAR)nonce;
  ai.cbNonce = NONCE;
  ai.pbAuthData = (PUCHAR)aad;
  ai.cbAuthData = aadLen;
  ai.pbTag = tag;
  ai.cbTag = TAG;
  s = BCryptEncrypt(k, ptLen ? (PUCHAR)pt : &empty, ptLen, &ai, NULL, 0, ptLen ? ct : &empty, ptLen, &cb, 0);
  if (s >= 0 && cb != ptLen) s = (NTSTATUS)0xC0000001L;
  BCryptDestroyKey(k);
  return s;
}

typedef struct {
  const BYTE *changeId;
  ULONGLONG changeTime;
  const char *user;
  DWORD userLen;
  const BYTE *pw; /* UTF-8 */
  DWORD pwLen;
} Change;

/* Header up to and including the seven strings (core/envelope.ts encodeHeader). */
static DWORD write_header(BYTE *p, const Target *t, DWORD suite, const Change *ch) {
  const char *f[7] = {g_cfg.domain, ch->user, "", "", "", "", g_cfg.host};
  DWORD fl[7] = {g_cfg.domainLen, ch->userLen, 0, 0, 0, 0, g_cfg.hostLen};
  DWORD at = 0;
  CopyMemory(p, "PWSY", 4);
  p[4] = 1;
  p[5] = (BYTE)suite;
  p[6] = 1; /* pwEnc: UTF-8 */
  CopyMemory(p + 7, t->keyId, 16);
  CopyMemory(p + 23, ch->changeId, 16);
  put64(p + 39, ch->changeTime);
  at = 47;
  for (int i = 0; i < 7; i++) {
    put16(p + at, fl[i]);
    CopyMemory(p + at + 2, f[i], fl[i]);
    at += 2 + fl[i];
  }
  return at;
}

static DWORD header_size(const Change *ch) { return 47 + 14 + g_cfg.domainLen + ch->userLen + g_cfg.hostLen; }

/* Suite 1 from the shared secret on: HKDF, then GCM over the header as AAD. z is big-endian. */
static NTSTATUS seal_p256_from_secret(const Target *t, const Change *ch, const BYTE z[32], const BYTE epk[POINT],
                                      BYTE **out, DWORD *outLen) {
  BYTE info[2 * POINT], cek[32];
  DWORD hl = header_size(ch), total = hl + POINT + NONCE + ch->pwLen + TAG;
  BYTE *env = (BYTE *)HeapAlloc(GetProcessHeap(), 0, total);
  NTSTATUS s;
  if (!env) return (NTSTATUS)0xC0000017L;
  write_header(env, t, SUITE_P256, ch);
  CopyMemory(env + hl, epk, POINT);
  s = BCryptGenRandom(NULL, env + hl + POINT, NONCE, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
  CopyMemory(info, epk, POINT);
  CopyMemory(info + POINT, t->blob, POINT);
  if (s >= 0) s = hkdf32(SALT, SALT_LEN, z, 32, info, sizeof info, cek);
  if (s >= 0)
    s = aes_gcm(cek, env + hl + POINT, env, hl + POINT + NONCE, ch->pw, ch->pwLen, env + hl + POINT + NONCE,
                env + total - TAG);
  SecureZeroMemory(cek, sizeof cek);
  if (s < 0) { HeapFree(GetProcessHeap(), 0, env); return s; }
  *out = env;
  *outLen = total;
  return s;
}

static NTSTATUS seal_p256(const Target *t, const Change *ch, BYTE **out, DWORD *outLen) {
  BCRYPT_KEY_HANDLE eph = NULL, rpk = NULL;
  BCRYPT_SECRET_HANDLE sec = NULL;
  BYTE blob[sizeof(BCRYPT_ECCKEY_BLOB) + 64], epk[POINT], z[32], zbe[32];
  BCRYPT_ECCKEY_BLOB *hdr = (BCRYPT_ECCKEY_BLOB *)blob;
  ULONG cb = 0;
  NTSTATUS s = BCryptGenerateKeyPair(g_ecdh, &eph, 256, 0);
  if (s >= 0) s = BCryptFinalizeKeyPair(eph, 0);
  if (s >= 0) s = BCryptExportKey(eph, NULL, BCRYPT_ECCPUBLIC_BLOB, blob, sizeof blob, &cb, 0);
  if (s >= 0 && (cb != sizeof blob || hdr->cbKey != 32)) s = (NTSTATUS)0xC0000001L;
  if (s >= 0) {
    epk[0] = 4;
    CopyMemory(epk + 1, blob + sizeof *hdr, 64);
    hdr->dwMagic = BCRYPT_ECDH_PUBLIC_P256_MAGIC;
    hdr->cbKey = 32;
    CopyMemory(blob + sizeof *hdr, t->blob + 1, 64);
    s = BCryptImportKeyPair(g_ecdh, NULL, BCRYPT_ECCPUBLIC_BLOB, &rpk, blob, sizeof blob, 0);
  }
  if (s >= 0) s = BCryptSecretAgreement(eph, rpk, &sec, 0);
  /* Wine's BCryptSecretAgreement is a stub that returns success: only the derivation tells. */
  if (s >= 0) s = BCryptDeriveKey(sec, BCRYPT_KDF_RAW_SECRET, NULL, z, sizeof z, &cb, 0);
  if (s >= 0 && cb != 32) s = (NTSTATUS)0xC0000001L;
  if (s >= 0) {
    for (int i = 0; i < 32; i++) zbe[i] = z[31 - i]; /* CNG returns the raw secret little-endian */
    s = seal_p256_from_secret(t, ch, zbe, epk, out, outLen);
  }
  SecureZeroMemory(z, sizeof z);
  SecureZeroMemory(zbe, sizeof zbe);
  if (sec) BCryptDestroySecret(sec);
  if (rpk) BCryptDestroyKey(rpk);
  if (eph) BCryptDestroyKey(eph);
  return s;
}

#ifdef PWSYNC_TEST_SUITES
/* Test suite 0xF1: the kem field is u16 length | RSA PKCS#1 v1.5 of a random CEK. */
static NTSTATUS seal_test_rsa(const Target *t, const Change *ch, BYTE **out, DWORD *outLen) {
  const BCRYPT_RSAKEY_BLOB *rb = (const BCRYPT_RSAKEY_BLOB *)t->blob;
  DWORD hl = header_size(ch), kemLen = rb->cbModulus, total = hl + 2 + kemLen + NONCE + ch->pwLen + TAG;
  BCRYPT_KEY_HANDLE rk = NULL;
  BYTE cek[32];
  ULONG cb = 0;
  BYTE *env = (BYTE *)HeapAlloc(GetProcessHeap(), 0, total);
  NTSTATUS s;
  if (!env) return (NTSTATUS)0xC0000017L;
  write_header(env, t, SUITE_TEST_RSA, ch);
  put16(env + hl, kemLen);
  s = BCryptGenRandom(NULL, cek, sizeof cek, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
  if (s >= 0) s = BCryptImportKeyPair(g_rsa, NULL, BCRYPT_RSAPUBLIC_BLOB, &rk, (PUCHAR)t->blob, t->blobLen, 0);
  if (s >= 0) s = BCryptEncrypt(rk, cek, sizeof cek, NULL, NULL, 0, env + hl + 2, kemLen, &cb, BCRYPT_PAD_PKCS1);
  if (s >= 0 && cb != kemLen) s = (NTSTATUS)0xC0000001L;
  if (s >= 0) s = BCryptGenRandom(NULL, env + hl + 2 + kemLen, NONCE, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
  if (s >= 0)
    s = aes_gcm(cek, env + hl + 2 + kemLen, env, hl + 2 + kemLen + NONCE, ch->pw, ch->pwLen,
                env + hl + 2 + kemLen + NONCE, env + total - TAG);
  SecureZeroMemory(cek, sizeof cek);
  if (rk) BCryptDestroyKey(rk);
  if (s < 0) { HeapFree(GetProcessHeap(), 0, env); return s; }
  *out = env;
  *outLen = total;
  return s;
}
#endif

/* ---------- handoff ---------- */

/* Waits for an overlapped operation until the deadline; on timeout cancels it and waits for the cancel. */
static DWORD wait_io(HANDLE h, OVERLAPPED *ov, ULONGLONG deadlineUs, DWORD *n) {
  DWORD w = WaitForSingleObject(ov->hEvent, ms_left(deadlineUs));
  if (w != WAIT_OBJECT_0) {
    CancelIoEx(h, ov);
    GetOverlappedResult(h, ov, n, TRUE);
    return WAIT_TIMEOUT;
  }
  return GetOverlappedResult(h, ov, n, FALSE) ? 0 : GetLastError();
}

/* The server end must run as the same account as this process (in LSASS: SYSTEM), so that a
 * squatter on the pipe name cannot collect frames or fake acknowledgements. */
static BOOL server_trusted(HANDLE pipe) {
  ULONG pid = 0;
  HANDLE p = NULL, tok = NULL, self = NULL;
  BYTE a[256], b[256];
  DWORD cb;
  BOOL ok = FALSE;
  if (!GetNamedPipeServerProcessId(pipe, &pid)) return FALSE;
  if (!(p = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid))) return FALSE;
  if (OpenProcessToken(p, TOKEN_QUERY, &tok) && OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &self) &&
      GetTokenInformation(tok, TokenUser, a, sizeof a, &cb) && GetTokenInformation(self, TokenUser, b, sizeof b, &cb))
    ok = EqualSid(((TOKEN_USER *)a)->User.Sid, ((TOKEN_USER *)b)->User.Sid);
  if (tok) CloseHandle(tok);
  if (self) CloseHandle(self);
  CloseHandle(p);
  return ok;
}

/* Sends u32 len | frame and waits for "A" | changeId. Returns TRUE only when acknowledged. */
static BOOL pipe_handoff(const BYTE *msg, DWORD len, const BYTE changeId[16], ULONGLONG deadlineUs, CallResult *r) {
  HANDLE h = INVALID_HANDLE_VALUE, ev = NULL;
  OVERLAPPED ov;
  BYTE ack[17];
  DWORD n = 0, got = 0, err = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    h = CreateFileW(g_cfg.pipe, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
    if (h != INVALID_HANDLE_VALUE) break;
    err = GetLastError();
    if (err != ERROR_PIPE_BUSY || attempt) break;
    DWORD wait = ms_left(deadlineUs);
    if (wait > 50) wait = 50;
    if (!wait || !WaitNamedPipeW(g_cfg.pipe, wait)) break;
  }
  if (h == INVALID_HANDLE_VALUE) { r->pipe = err == ERROR_PIPE_BUSY ? "busy" : "unavailable"; r->pipeError = err; return FALSE; }
  if (!server_trusted(h)) { r->pipe = "untrusted server"; CloseHandle(h); return FALSE; }
  ev = CreateEventW(NULL, TRUE, FALSE, NULL);
  ZeroMemory(&ov, sizeof ov);
  ov.hEvent = ev;
  if (!WriteFile(h, msg, len, NULL, &ov) && (err = GetLastError()) != ERROR_IO_PENDING) {
    r->pipe = "write failed";
    r->pipeError = err;
    goto done;
  }
  if ((err = wait_io(h, &ov, deadlineUs, &n)) || n != len) {
    r->pipe = err == WAIT_TIMEOUT ? "write timed out" : "write failed";
    r->pipeError = err;
    goto done;
  }
  while (got < sizeof ack) {
    ResetEvent(ev);
    ZeroMemory(&ov, sizeof ov);
    ov.hEvent = ev;
    if (!ReadFile(h, ack + got, sizeof ack - got, NULL, &ov) && (err = GetLastError()) != ERROR_IO_PENDING) break;
    if ((err = wait_io(h, &ov, deadlineUs, &n)) || n == 0) break;
    got += n;
  }
  if (got < sizeof ack) {
    r->pipe = err == WAIT_TIMEOUT ? "no acknowledgement in time" : "closed before acknowledging";
    r->pipeError = err;
    goto done;
  }
  if (ack[0] != 'A' || memcmp(ack + 1, changeId, 16) != 0) { r->pipe = "wrong acknowledgement"; goto done; }
  r->pipe = "acknowledged";
  CloseHandle(ev);
  CloseHandle(h);
  return TRUE;
done:
  if (ev) CloseHandle(ev);
  CloseHandle(h);
  return FALSE;
}

/* tmp\name with CREATE_NEW, write, flush, then rename into new\ (write-through). */
static DWORD spool_once(const WCHAR *name, const BYTE *frame, DWORD len) {
  WCHAR tmp[MAX_PATH + 80], dst[MAX_PATH + 80];
  DWORD w = 0, err = 0;
  path_join(tmp, g_cfg.spool, L"tmp", name);
  path_join(dst, g_cfg.spool, L"new", name);
  HANDLE h = CreateFileW(tmp, GENERIC_WRITE, 0, NULL, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, NULL);
  if (h == INVALID_HANDLE_VALUE) return GetLastError();
  if (!WriteFile(h, frame, len, &w, NULL)) err = GetLastError();
  else if (w != len) err = ERROR_DISK_FULL;
  if (!err && !FlushFileBuffers(h)) err = GetLastError();
  CloseHandle(h);
  if (!err && !MoveFileExW(tmp, dst, MOVEFILE_WRITE_THROUGH)) err = GetLastError();
  if (err) DeleteFileW(tmp);
  return err;
}

static DWORD spool(const BYTE *frame, DWORD len, const BYTE changeId[16], ULONGLONG changeTime) {
  WCHAR name[64];
  DWORD err;
  spool_name(changeId, changeTime, name);
  err = spool_once(name, frame, len);
  if (err == ERROR_PATH_NOT_FOUND && !(err = ensure_spool_dirs(g_cfg.spool))) err = spool_once(name, frame, len);
  return err;
}

/* ---------- the exports ---------- */

static BOOL well_formed(const UNICODE_STRING *s, USHORT maxBytes) {
  return s && (s->Length & 1) == 0 && s->Length <= s->MaximumLength && s->Length <= maxBytes && (s->Buffer || !s->Length);
}

typedef struct {
  BYTE *pt;  /* UTF-8 password, the one plaintext copy this package makes */
  DWORD ptCap;
  BYTE *env[MAX_TARGETS];
  DWORD envLen[MAX_TARGETS];
  BYTE *frame;
} CallState;

static void release(CallState *st) {
  if (st->pt) { free_secret(st->pt, st->ptCap); st->pt = NULL; }
  for (int i = 0; i < MAX_TARGETS; i++)
    if (st->env[i]) { HeapFree(GetProcessHeap(), 0, st->env[i]); st->env[i] = NULL; }
  if (st->frame) { HeapFree(GetProcessHeap(), 0, st->frame); st->frame = NULL; }
}

static NOINLINE void notify_body(PUNICODE_STRING user, PUNICODE_STRING pw, CallState *st, CallResult *r, ULONGLONG deadlineUs) {
  char userU8[MAX_USER_BYTES / 2 * 3 + 1];
  BYTE changeId[16];
  Change ch;
  DWORD frameLen = 4 + 16 + 2, at;
  BOOL shared = FALSE;
  if (!well_formed(user, MAX_USER_BYTES) || !well_formed(pw, MAX_PW_BYTES) || user->Length == 0) {
    r->stage = "args";
    r->reason = "malformed UNICODE_STRING from LSA";
    return;
  }
  ZeroMemory(&ch, sizeof ch);
  ch.userLen = to_utf8(user->Buffer, user->Length / 2, userU8, sizeof userU8, WC_ERR_INVALID_CHARS);
  if (!ch.userLen) { r->stage = "args"; r->reason = "user name is not valid UTF-16"; return; }
  ch.user = userU8;
  st->ptCap = pw->Length / 2 * 3 + 1;
  st->pt = (BYTE *)HeapAlloc(GetProcessHeap(), 0, st->ptCap);
  if (!st->pt) { r->stage = "convert"; r->reason = "out of memory"; return; }
  if (pw->Length) {
    int n = WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, pw->Buffer, pw->Length / 2, (char *)st->pt, (int)st->ptCap, NULL, NULL);
    if (n <= 0) {
      r->stage = "convert";
      r->error = GetLastError();
      r->reason = "password is not valid UTF-16";
      return;
    }
    ch.pwLen = (DWORD)n;
  }
  ch.pw = st->pt;
  ch.changeId = changeId;
  ch.changeTime = unix_ms();
  BCryptGenRandom(NULL, changeId, sizeof changeId, BCRYPT_USE_SYSTEM_PREFERRED_RNG);

  AcquireSRWLockShared(&g_cfgLock);
  shared = TRUE;
  r->stage = "seal";
  r->targets = g_cfg.nTargets;
  for (DWORD i = 0; i < g_cfg.nTargets; i++) {
    const Target *t = &g_cfg.targets[i];
    NTSTATUS s = (NTSTATUS)0xC00000BBL; /* STATUS_NOT_SUPPORTED */
    if (t->suite == SUITE_P256) s = seal_p256(t, &ch, &st->env[i], &st->envLen[i]);
#ifdef PWSYNC_TEST_SUITES
    else if (t->suite == SUITE_TEST_RSA) s = seal_test_rsa(t, &ch, &st->env[i], &st->envLen[i]);
#endif
    if (s < 0) { r->error = (DWORD)s; st->env[i] = NULL; continue; }
    r->sealed++;
    frameLen += 2 + t->nameLen + 4 + st->envLen[i];
  }
  /* Every plaintext copy goes before any I/O. */
  free_secret(st->pt, st->ptCap);
  st->pt = NULL;
  if (!r->sealed) { r->reason = "no target could be sealed for (CNG failed): change not captured"; goto out; }
  if (r->sealed < r->targets) r->reason = "some targets could not be sealed for: captured for the others";

  st->frame = (BYTE *)HeapAlloc(GetProcessHeap(), 0, 4 + frameLen);
  if (!st->frame) { r->stage = "frame"; r->reason = "out of memory: change not captured"; goto out; }
  put32(st->frame, frameLen);
  CopyMemory(st->frame + 4, "PWC1", 4);
  CopyMemory(st->frame + 8, changeId, 16);
  put16(st->frame + 24, r->sealed);
  at = 26;
  for (DWORD i = 0; i < g_cfg.nTargets; i++) {
    if (!st->env[i]) continue;
    put16(st->frame + at, g_cfg.targets[i].nameLen);
    CopyMemory(st->frame + at + 2, g_cfg.targets[i].name, g_cfg.targets[i].nameLen);
    at += 2 + g_cfg.targets[i].nameLen;
    put32(st->frame + at, st->envLen[i]);
    CopyMemory(st->frame + at + 4, st->env[i], st->envLen[i]);
    at += 4 + st->envLen[i];
  }

  if (g_cfg.pipe[0]) {
    r->stage = "pipe";
    if (pipe_handoff(st->frame, 4 + frameLen, changeId, deadlineUs, r)) { r->stage = "done"; goto out; }
  } else {
    r->pipe = "not configured";
  }
  /* Not acknowledged (even if written: the notifier drops the duplicate by change id). */
  r->stage = "spool";
  {
    DWORD err = spool(st->frame + 4, frameLen, changeId, ch.changeTime);
    if (err) {
      r->error = err;
      r->reason = err == ERROR_PATH_NOT_FOUND ? "spool folder and its parent are missing: change not captured"
                                               : "cannot write to the spool folder: change not captured";
    } else {
      r->spooled = TRUE;
      r->stage = "done";
    }
  }
out:
  if (shared) ReleaseSRWLockShared(&g_cfgLock);
}

BOOLEAN NTAPI InitializeChangeNotify(void) {
  QueryPerformanceFrequency(&g_qpf);
  g_loadedAt = unix_ms();
  DWORD code = 0;
  __try {
    initialize_body();
  } __except (code = GetExceptionCode(), EXCEPTION_EXECUTE_HANDLER) {
    char why[96];
    _snprintf(why, sizeof why - 1, "exception 0x%08lx while loading the configuration", code);
    why[sizeof why - 1] = 0;
    disable(why);
  }
  /* TRUE even when disabled: LSA keeps the package loaded, and the status file says why it idles. */
  return TRUE;
}

BOOLEAN NTAPI PasswordFilter(PUNICODE_STRING AccountName, PUNICODE_STRING FullName, PUNICODE_STRING Password,
                             BOOLEAN SetOperation) {
  (void)AccountName; (void)FullName; (void)Password; (void)SetOperation;
  return TRUE; /* a policy gate comes later; this package only captures */
}

NTSTATUS NTAPI PasswordChangeNotify(PUNICODE_STRING UserName, ULONG RelativeId, PUNICODE_STRING NewPassword) {
  CallState st;
  CallResult r;
  (void)RelativeId;
  ZeroMemory(&st, sizeof st);
  ZeroMemory(&r, sizeof r);
  if (g_disabled || !g_ready) {
    r.stage = "disabled";
#ifdef PWSYNC_TEST_SUITES
    record(&r); /* not counted as a failure again: the status file already says why */
#endif
    return STATUS_SUCCESS;
  }
  ULONGLONG deadlineUs = mono_us() + (ULONGLONG)g_cfg.budgetMs * 1000ULL;
  DWORD code = 0;
  __try {
    notify_body(UserName, NewPassword, &st, &r, deadlineUs);
  } __except (code = GetExceptionCode(), EXCEPTION_EXECUTE_HANDLER) {
    char why[120];
    _snprintf(why, sizeof why - 1, "exception 0x%08lx in PasswordChangeNotify (stage %s): disabled until restart",
              code, r.stage ? r.stage : "args");
    why[sizeof why - 1] = 0;
    /* The shared config lock may still be held by this thread; disabled calls never take it. */
    if (st.pt) free_secret(st.pt, st.ptCap);
    st.pt = NULL;
    r.stage = "exception";
    r.error = code;
    r.reason = "exception: change not captured, package disabled";
    disable(why);
  }
  release(&st);
  record(&r);
  return STATUS_SUCCESS;
}

#ifdef PWSYNC_TEST_SUITES
/* Test build only: what the last call did, and the crypto primitives against node:crypto vectors. */
DWORD WINAPI PwsyncLastCall(char *out, DWORD cap) {
  AcquireSRWLockShared(&g_lastLock);
  lstrcpynA(out, g_lastCall, (int)cap);
  ReleaseSRWLockShared(&g_lastLock);
  return (DWORD)lstrlenA(out);
}

NTSTATUS WINAPI PwsyncTestHkdf(const BYTE *salt, ULONG saltLen, const BYTE *ikm, ULONG ikmLen,
                                                     const BYTE *info, ULONG infoLen, BYTE out[32]) {
  return hkdf32(salt, saltLen, ikm, ikmLen, info, infoLen, out);
}

NTSTATUS WINAPI PwsyncTestGcm(const BYTE key[32], const BYTE nonce[12], const BYTE *aad, ULONG aadLen,
                                                    const BYTE *pt, ULONG ptLen, BYTE *ct, BYTE tag[16]) {
  return aes_gcm(key, nonce, aad, aadLen, pt, ptLen, ct, tag);
}

/* Suite 1 from a given shared secret and ephemeral point (Wine cannot derive one): the envelope
 * layout, HKDF and AAD, for core/envelope.ts open() to check. Uses the first configured target. */
NTSTATUS WINAPI PwsyncTestSealP256(const BYTE z[32], const BYTE epk[65], const char *user,
                                                         const BYTE *pw, ULONG pwLen, BYTE *out, ULONG cap, ULONG *outLen) {
  BYTE changeId[16] = {0};
  Change ch;
  BYTE *env = NULL;
  DWORD len = 0;
  NTSTATUS s;
  ZeroMemory(&ch, sizeof ch);
  BCryptGenRandom(NULL, changeId, 16, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
  ch.changeId = changeId;
  ch.changeTime = unix_ms();
  ch.user = user;
  ch.userLen = (DWORD)lstrlenA(user);
  ch.pw = pw;
  ch.pwLen = pwLen;
  if (!g_cfg.nTargets || g_cfg.targets[0].suite != SUITE_P256) return (NTSTATUS)0xC000000DL;
  s = seal_p256_from_secret(&g_cfg.targets[0], &ch, z, epk, &env, &len);
  if (s < 0) return s;
  if (len > cap) s = (NTSTATUS)0xC0000023L;
  else CopyMemory(out, env, len);
  *outLen = len;
  HeapFree(GetProcessHeap(), 0, env);
  return s;
}
#endif
