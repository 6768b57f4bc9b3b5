/*
 * harness.exe: stands in for LSASS under Wine (there is no lsass.exe there). Test-only.
 *
 *   harness config <file>            writes HKLM\SOFTWARE\pwsync from key=value lines (see writeConfig)
 *   harness notify <dll> <user> <n>  loads the DLL, InitializeChangeNotify, then for each stdin line
 *                                    (hex of a UTF-16LE password) PasswordChangeNotify n times;
 *                                    prints one "call" line per call and a "timing" line; a line
 *                                    "#rmtree <path>" deletes that folder tree between calls
 *   harness threads <dll> <user> <t> <n>  t threads × n calls with the one stdin password
 *   harness badargs <dll>            malformed UNICODE_STRINGs, each must return STATUS_SUCCESS
 *   harness wild <dll>               a wild Buffer pointer, then a normal call: SEH must hold
 *   harness memscan <dll> <user> <mask>  stdin: hex of the UTF-16LE password XOR mask, then of its
 *                                    UTF-8 form XOR mask; counts clear copies left in this process
 *   harness vectors <dll>            stdin lines "hkdf salt ikm info" | "gcm key nonce aad pt" |
 *                                    "seal1 z epk user pw" (hex, "-" = empty): prints the DLL's answers
 *   harness send <pipe> <ms>         a raw pipe client: writes the bytes of one stdin hex line (the
 *                                    u32 length included) and waits up to <ms> for an answer; prints
 *                                    "send open=0 error=…" or "send ok=1 ack=<hex>" | "send ok=0 got=<n> error=…"
 *   harness hold <pipe> <ms>         connects, sends nothing, prints "held" and keeps the instance <ms>
 *
 * Passwords arrive on stdin (a pipe), never in argv or env. Output: one line per result, key=value.
 */
#include <windows.h>
#include <ntsecapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef STATUS_SUCCESS
#define STATUS_SUCCESS ((NTSTATUS)0x00000000L)
#endif

typedef BOOLEAN(NTAPI *InitFn)(void);
typedef BOOLEAN(NTAPI *FilterFn)(PUNICODE_STRING, PUNICODE_STRING, PUNICODE_STRING, BOOLEAN);
typedef NTSTATUS(NTAPI *NotifyFn)(PUNICODE_STRING, ULONG, PUNICODE_STRING);
typedef DWORD(WINAPI *LastCallFn)(char *, DWORD);
typedef NTSTATUS(WINAPI *HkdfFn)(const BYTE *, ULONG, const BYTE *, ULONG, const BYTE *, ULONG, BYTE *);
typedef NTSTATUS(WINAPI *GcmFn)(const BYTE *, const BYTE *, const BYTE *, ULONG, const BYTE *, ULONG, BYTE *, BYTE *);
typedef NTSTATUS(WINAPI *Seal1Fn)(const BYTE *, const BYTE *, const char *, const BYTE *, ULONG, BYTE *, ULONG, ULONG *);

static HMODULE dll;
static InitFn initFn;
static FilterFn filterFn;
static NotifyFn notifyFn;
static LastCallFn lastCallFn;
static LARGE_INTEGER qpf;

static void die(const char *what) {
  printf("error=%s lastError=%lu\n", what, GetLastError());
  exit(2);
}

static void load(const wchar_t *path) {
  QueryPerformanceFrequency(&qpf);
  if (!(dll = LoadLibraryW(path))) die("LoadLibrary");
  initFn = (InitFn)(void *)GetProcAddress(dll, "InitializeChangeNotify");
  filterFn = (FilterFn)(void *)GetProcAddress(dll, "PasswordFilter");
  notifyFn = (NotifyFn)(void *)GetProcAddress(dll, "PasswordChangeNotify");
  lastCallFn = (LastCallFn)(void *)GetProcAddress(dll, "PwsyncLastCall");
  if (!initFn || !filterFn || !notifyFn) die("missing export");
}

static double now_us(void) {
  LARGE_INTEGER c;
  QueryPerformanceCounter(&c);
  return (double)c.QuadPart * 1e6 / (double)qpf.QuadPart;
}

static void init(void) {
  double t0 = now_us();
  BOOLEAN ok = initFn();
  printf("init ok=%d us=%.0f\n", ok, now_us() - t0);
}

static void print_last(void) {
  char buf[400];
  if (lastCallFn) {
    lastCallFn(buf, sizeof buf);
    printf(" %s", buf);
  }
  printf("\n");
  fflush(stdout);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes hex (or "-" for empty) into a new buffer; returns its length, -1 on bad input. */
static int unhex(const char *s, BYTE **out) {
  size_t n = strcspn(s, " \r\n");
  *out = (BYTE *)calloc(n / 2 + 1, 1);
  if (n == 1 && s[0] == '-') return 0;
  if (n % 2) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
    if (a < 0 || b < 0) return -1;
    (*out)[i] = (BYTE)(a * 16 + b);
  }
  return (int)(n / 2);
}

static void printhex(const BYTE *b, ULONG n) {
  if (!n) printf("-");
  for (ULONG i = 0; i < n; i++) printf("%02x", b[i]);
}

/* The DLL must not rely on a terminating NUL: the string is followed by garbage. */
static void make_us(UNICODE_STRING *us, const BYTE *utf16, int len) {
  BYTE *b = (BYTE *)HeapAlloc(GetProcessHeap(), 0, (SIZE_T)len + 8);
  memcpy(b, utf16, (size_t)len);
  memset(b + len, '#', 8);
  us->Buffer = (PWSTR)b;
  us->Length = (USHORT)len;
  us->MaximumLength = (USHORT)(len + 8);
}

static void free_us(UNICODE_STRING *us) {
  SecureZeroMemory(us->Buffer, us->MaximumLength);
  HeapFree(GetProcessHeap(), 0, us->Buffer);
}

static void user_us(UNICODE_STRING *us, const wchar_t *user) {
  make_us(us, (const BYTE *)user, (int)(wcslen(user) * 2));
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Deletes a folder tree: the operator who removes the spool folder under a running DC. */
static void rmtree(const wchar_t *dir) {
  wchar_t pat[MAX_PATH], sub[MAX_PATH];
  WIN32_FIND_DATAW fd;
  _snwprintf(pat, MAX_PATH, L"%ls\\*", dir);
  HANDLE h = FindFirstFileW(pat, &fd);
  if (h != INVALID_HANDLE_VALUE) {
    do {
      if (!wcscmp(fd.cFileName, L".") || !wcscmp(fd.cFileName, L"..")) continue;
      _snwprintf(sub, MAX_PATH, L"%ls\\%ls", dir, fd.cFileName);
      if (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) rmtree(sub);
      else DeleteFileW(sub);
    } while (FindNextFileW(h, &fd));
    FindClose(h);
  }
  printf("rmtree ok=%d\n", RemoveDirectoryW(dir) ? 1 : 0);
}

static int cmd_notify(int repeat, const wchar_t *user) {
  static char line[65536];
  double *times = NULL;
  int calls = 0, cap = 0;
  UNICODE_STRING u, p;
  BOOLEAN filtered;
  init();
  user_us(&u, user);
  filtered = filterFn(&u, NULL, NULL, FALSE);
  printf("filter ok=%d\n", filtered);
  while (fgets(line, sizeof line, stdin)) {
    BYTE *pw;
    if (line[strspn(line, "\r\n")] == 0) continue; /* an empty password is "-" */
    if (!strncmp(line, "#rmtree ", 8)) {
      wchar_t w[MAX_PATH];
      line[strcspn(line, "\r\n")] = 0;
      MultiByteToWideChar(CP_UTF8, 0, line + 8, -1, w, MAX_PATH);
      rmtree(w);
      continue;
    }
    int n = unhex(line, &pw);
    if (n < 0 || n % 2) die("bad password line");
    SecureZeroMemory(line, sizeof line);
    for (int i = 0; i < repeat; i++) {
      make_us(&p, pw, n);
      double t0 = now_us();
      NTSTATUS s = notifyFn(&u, 1104, &p);
      double dt = now_us() - t0;
      free_us(&p);
      if (calls == cap) times = (double *)realloc(times, sizeof(double) * (size_t)(cap = cap ? cap * 2 : 64));
      times[calls++] = dt;
      printf("call n=%d status=0x%08lx us=%.0f", calls, (unsigned long)s, dt);
      print_last();
    }
    SecureZeroMemory(pw, (size_t)n);
    free(pw);
  }
  free_us(&u);
  if (calls) {
    qsort(times, (size_t)calls, sizeof(double), cmp_double);
    printf("timing calls=%d median_us=%.0f max_us=%.0f\n", calls, times[calls / 2], times[calls - 1]);
  }
  return 0;
}

typedef struct {
  const wchar_t *user;
  const BYTE *pw;
  int len, calls;
  volatile LONG *bad;
} ThreadArgs;

static DWORD WINAPI notify_thread(void *arg) {
  ThreadArgs *a = (ThreadArgs *)arg;
  UNICODE_STRING u, p;
  user_us(&u, a->user);
  for (int i = 0; i < a->calls; i++) {
    make_us(&p, a->pw, a->len);
    if (notifyFn(&u, 1104, &p) != STATUS_SUCCESS) InterlockedIncrement(a->bad);
    free_us(&p);
  }
  free_us(&u);
  return 0;
}

/* LSASS calls from several threads at once: one password line, <threads> × <calls> changes. */
static int cmd_threads(const wchar_t *user, int threads, int calls) {
  static char line[65536];
  HANDLE h[64];
  volatile LONG bad = 0;
  BYTE *pw;
  int n;
  if (threads < 1 || threads > 64) die("threads: 1..64");
  if (!fgets(line, sizeof line, stdin) || (n = unhex(line, &pw)) < 0 || n % 2) die("bad password line");
  SecureZeroMemory(line, sizeof line);
  init();
  ThreadArgs a = {user, pw, n, calls, &bad};
  double t0 = now_us();
  for (int i = 0; i < threads; i++) h[i] = CreateThread(NULL, 0, notify_thread, &a, 0, NULL);
  WaitForMultipleObjects((DWORD)threads, h, TRUE, INFINITE);
  printf("threads calls=%d notSuccess=%ld us=%.0f\n", threads * calls, bad, now_us() - t0);
  SecureZeroMemory(pw, (size_t)n);
  return 0;
}

static int cmd_badargs(void) {
  static WCHAR two[2] = {L'a', L'b'};
  UNICODE_STRING u, p;
  struct {
    const char *name;
    UNICODE_STRING *user, *pw;
    UNICODE_STRING uv, pv;
  } cases[6];
  init();
  user_us(&u, L"mallory");
  make_us(&p, (const BYTE *)L"xy", 4);
  memset(cases, 0, sizeof cases);
  cases[0].name = "null-user"; cases[0].user = NULL; cases[0].pw = &p;
  cases[1].name = "null-password"; cases[1].user = &u; cases[1].pw = NULL;
  cases[2].name = "odd-length"; cases[2].pv = p; cases[2].pv.Length = 3;
  cases[3].name = "null-buffer"; cases[3].pv.Length = 4; cases[3].pv.MaximumLength = 4;
  cases[4].name = "length-over-maximum"; cases[4].pv.Buffer = two; cases[4].pv.Length = 0xFFFE; cases[4].pv.MaximumLength = 4;
  cases[5].name = "empty-user"; cases[5].uv.Buffer = two; cases[5].pv = p;
  for (int i = 2; i < 6; i++) {
    cases[i].user = i == 5 ? &cases[i].uv : &u;
    cases[i].pw = &cases[i].pv;
  }
  for (int i = 0; i < 6; i++) {
    double t0 = now_us();
    NTSTATUS s = notifyFn(cases[i].user, 1, cases[i].pw);
    printf("case name=%s status=0x%08lx us=%.0f", cases[i].name, (unsigned long)s, now_us() - t0);
    print_last();
  }
  return 0;
}

static int cmd_wild(void) {
  UNICODE_STRING u, p, empty = {0, 0, NULL};
  init();
  user_us(&u, L"mallory");
  p.Buffer = (PWSTR)(ULONG_PTR)0xdead0000;
  p.Length = 16;
  p.MaximumLength = 16;
  for (int i = 0; i < 2; i++) {
    double t0 = now_us();
    NTSTATUS s = notifyFn(&u, 1, i ? &empty : &p);
    printf("case name=%s status=0x%08lx us=%.0f", i ? "after" : "wild", (unsigned long)s, now_us() - t0);
    print_last();
  }
  return 0;
}

/* Counts places in committed readable memory equal to needle, where masked = needle XOR mask: the
 * needle itself is never held in clear by the scanner. */
static int scan(const BYTE *masked, int n, BYTE mask) {
  SYSTEM_INFO si;
  MEMORY_BASIC_INFORMATION mbi;
  int hits = 0;
  GetSystemInfo(&si);
  BYTE *a = (BYTE *)si.lpMinimumApplicationAddress;
  while (a < (BYTE *)si.lpMaximumApplicationAddress && VirtualQuery(a, &mbi, sizeof mbi)) {
    DWORD prot = mbi.Protect & 0xff;
    BOOL readable = prot == PAGE_READONLY || prot == PAGE_READWRITE || prot == PAGE_WRITECOPY ||
                    prot == PAGE_EXECUTE_READ || prot == PAGE_EXECUTE_READWRITE || prot == PAGE_EXECUTE_WRITECOPY;
    if (mbi.State == MEM_COMMIT && readable && !(mbi.Protect & PAGE_GUARD)) {
      const BYTE *p = (const BYTE *)mbi.BaseAddress;
      SIZE_T size = mbi.RegionSize;
      BYTE first = masked[0] ^ mask;
      for (SIZE_T i = 0; i + (SIZE_T)n <= size; i++) {
        if (p[i] != first) continue;
        int j = 1;
        while (j < n && (BYTE)(p[i + j] ^ mask) == masked[j]) j++;
        if (j == n) hits++;
      }
    }
    a = (BYTE *)mbi.BaseAddress + mbi.RegionSize;
  }
  return hits;
}

static int cmd_memscan(const wchar_t *user, BYTE mask) {
  static char line[16384];
  BYTE *m16, *m8;
  int n16, n8;
  UNICODE_STRING u, p;
  if (!fgets(line, sizeof line, stdin) || (n16 = unhex(line, &m16)) <= 0) die("bad masked UTF-16 line");
  if (!fgets(line, sizeof line, stdin) || (n8 = unhex(line, &m8)) <= 0) die("bad masked UTF-8 line");
  init();
  user_us(&u, user);
  BYTE *clear = (BYTE *)VirtualAlloc(NULL, (SIZE_T)n16 + 8, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
  for (int i = 0; i < n16; i++) clear[i] = m16[i] ^ mask;
  p.Buffer = (PWSTR)clear;
  p.Length = (USHORT)n16;
  p.MaximumLength = (USHORT)(n16 + 8);
  int positive = scan(m16, n16, mask); /* the caller's own copy must be found: the scan works */
  NTSTATUS s = notifyFn(&u, 1104, &p);
  printf("call status=0x%08lx", (unsigned long)s);
  print_last();
  SecureZeroMemory(clear, (SIZE_T)n16 + 8); /* LSA's copy is not ours to judge */
  printf("memscan positive=%d utf16=%d utf8=%d\n", positive, scan(m16, n16, mask), scan(m8, n8, mask));
  return 0;
}

static int cmd_vectors(void) {
  static char line[65536];
  HkdfFn hkdf = (HkdfFn)(void *)GetProcAddress(dll, "PwsyncTestHkdf");
  GcmFn gcm = (GcmFn)(void *)GetProcAddress(dll, "PwsyncTestGcm");
  Seal1Fn seal1 = (Seal1Fn)(void *)GetProcAddress(dll, "PwsyncTestSealP256");
  if (!hkdf || !gcm || !seal1) die("not a test build: no PwsyncTest exports");
  init();
  while (fgets(line, sizeof line, stdin)) {
    char *f[6] = {0};
    int nf = 0;
    for (char *t = strtok(line, " \r\n"); t && nf < 6; t = strtok(NULL, " \r\n")) f[nf++] = t;
    if (nf == 4 && !strcmp(f[0], "hkdf")) {
      BYTE *a, *b, *c, out[32];
      int la = unhex(f[1], &a), lb = unhex(f[2], &b), lc = unhex(f[3], &c);
      NTSTATUS s = hkdf(a, (ULONG)la, b, (ULONG)lb, c, (ULONG)lc, out);
      printf("hkdf status=0x%08lx out=", (unsigned long)s);
      printhex(out, 32);
      printf("\n");
    } else if (nf == 5 && !strcmp(f[0], "gcm")) {
      BYTE *k, *nonce, *aad, *pt, tag[16];
      int lk = unhex(f[1], &k), ln = unhex(f[2], &nonce), la = unhex(f[3], &aad), lp = unhex(f[4], &pt);
      BYTE *ct = (BYTE *)calloc((size_t)lp + 1, 1);
      if (lk != 32 || ln != 12) die("gcm: key 32, nonce 12");
      NTSTATUS s = gcm(k, nonce, aad, (ULONG)la, pt, (ULONG)lp, ct, tag);
      printf("gcm status=0x%08lx ct=", (unsigned long)s);
      printhex(ct, (ULONG)lp);
      printf(" tag=");
      printhex(tag, 16);
      printf("\n");
    } else if (nf == 5 && !strcmp(f[0], "seal1")) {
      BYTE *z, *epk, *pw, *out = (BYTE *)malloc(16384);
      ULONG len = 0;
      int lz = unhex(f[1], &z), le = unhex(f[2], &epk), lp = unhex(f[4], &pw);
      if (lz != 32 || le != 65) die("seal1: z 32, epk 65");
      NTSTATUS s = seal1(z, epk, f[3], pw, (ULONG)lp, out, 16384, &len);
      SecureZeroMemory(pw, (size_t)lp);
      printf("seal1 status=0x%08lx env=", (unsigned long)s);
      printhex(out, s >= 0 ? len : 0);
      printf("\n");
    } else {
      die("bad vectors line");
    }
    fflush(stdout);
  }
  return 0;
}

/* Config file (UTF-8), one setting per line:
 *   PipeName=\\.\pipe\name | SpoolDir=Z:\path | TimeBudgetMs=300 | Domain=example.test
 *   target=<suite> <enabled 0|1> <keyId hex> <PublicKey hex> <name, to the end of the line>
 * Replaces HKLM\SOFTWARE\pwsync as a whole. */
static int cmd_config(const wchar_t *file) {
  FILE *f = _wfopen(file, L"rb");
  char line[8192];
  HKEY k, tk;
  if (!f) die("cannot open the config file");
  RegDeleteTreeW(HKEY_LOCAL_MACHINE, L"SOFTWARE\\pwsync");
  if (RegCreateKeyExW(HKEY_LOCAL_MACHINE, L"SOFTWARE\\pwsync", 0, NULL, 0, KEY_ALL_ACCESS, NULL, &k, NULL)) die("RegCreateKeyEx");
  if (RegCreateKeyExW(k, L"Targets", 0, NULL, 0, KEY_ALL_ACCESS, NULL, &tk, NULL)) die("RegCreateKeyEx Targets");
  while (fgets(line, sizeof line, f)) {
    WCHAR w[8192];
    char *eq = strchr(line, '=');
    line[strcspn(line, "\r\n")] = 0;
    if (!eq) continue;
    *eq = 0;
    MultiByteToWideChar(CP_UTF8, 0, eq + 1, -1, w, 8192);
    if (!strcmp(line, "TimeBudgetMs")) {
      DWORD v = (DWORD)strtoul(eq + 1, NULL, 10);
      RegSetValueExW(k, L"TimeBudgetMs", 0, REG_DWORD, (const BYTE *)&v, sizeof v);
    } else if (!strcmp(line, "target")) {
      char *suite = strtok(eq + 1, " "), *en = strtok(NULL, " "), *kid = strtok(NULL, " ");
      char *pub = strtok(NULL, " "), *name = strtok(NULL, ""); /* the name may hold spaces */
      BYTE *kb, *pb;
      HKEY t;
      WCHAR wn[128];
      if (!name) die("target line: suite enabled keyId publicKey name");
      int lk = unhex(kid, &kb), lp = unhex(pub, &pb);
      if (lk < 0 || lp < 0) die("target line: keyId and publicKey are hex");
      DWORD s = (DWORD)strtoul(suite, NULL, 10), e = (DWORD)strtoul(en, NULL, 10);
      MultiByteToWideChar(CP_UTF8, 0, name, -1, wn, 128);
      if (RegCreateKeyExW(tk, wn, 0, NULL, 0, KEY_ALL_ACCESS, NULL, &t, NULL)) die("RegCreateKeyEx target");
      RegSetValueExW(t, L"Suite", 0, REG_DWORD, (const BYTE *)&s, sizeof s);
      RegSetValueExW(t, L"Enabled", 0, REG_DWORD, (const BYTE *)&e, sizeof e);
      RegSetValueExW(t, L"KeyId", 0, REG_BINARY, kb, (DWORD)lk);
      RegSetValueExW(t, L"PublicKey", 0, REG_BINARY, pb, (DWORD)lp);
      RegCloseKey(t);
    } else {
      WCHAR wk[64];
      MultiByteToWideChar(CP_UTF8, 0, line, -1, wk, 64);
      RegSetValueExW(k, wk, 0, REG_SZ, (const BYTE *)w, (DWORD)((wcslen(w) + 1) * sizeof(WCHAR)));
    }
  }
  fclose(f);
  RegCloseKey(tk);
  RegCloseKey(k);
  printf("config ok=1\n");
  return 0;
}

/* ---------- raw pipe client (pwsync-pipe.exe tests) ---------- */

static HANDLE open_pipe(const wchar_t *pipe) {
  for (int i = 0; i < 50; i++) { /* bounded: 50 × 100 ms for a free instance */
    HANDLE h = CreateFileW(pipe, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
    if (h != INVALID_HANDLE_VALUE || GetLastError() != ERROR_PIPE_BUSY) return h;
    WaitNamedPipeW(pipe, 100);
  }
  return INVALID_HANDLE_VALUE;
}

static DWORD io_wait(HANDLE h, OVERLAPPED *ov, DWORD ms, DWORD *n) {
  if (WaitForSingleObject(ov->hEvent, ms) != WAIT_OBJECT_0) {
    CancelIoEx(h, ov);
    GetOverlappedResult(h, ov, n, TRUE);
    return WAIT_TIMEOUT;
  }
  return GetOverlappedResult(h, ov, n, FALSE) ? 0 : GetLastError();
}

static int cmd_send(const wchar_t *pipe, DWORD ms) {
  static char line[1 << 22];
  BYTE *msg = NULL, ack[64];
  DWORD n = 0, got = 0, err = 0;
  OVERLAPPED ov;
  if (!fgets(line, sizeof line, stdin)) die("send: no stdin line");
  line[strcspn(line, "\r\n")] = 0;
  int len = unhex(line, &msg);
  if (len < 0) die("send: stdin is not hex");
  HANDLE h = open_pipe(pipe);
  if (h == INVALID_HANDLE_VALUE) { printf("send open=0 error=%lu\n", GetLastError()); return 0; }
  ZeroMemory(&ov, sizeof ov);
  ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
  ULONGLONG deadline = GetTickCount64() + ms;
  if (!WriteFile(h, msg, (DWORD)len, NULL, &ov) && (err = GetLastError()) != ERROR_IO_PENDING) goto done;
  if ((err = io_wait(h, &ov, ms, &n))) goto done;
  while (got < 17) {
    ULONGLONG now = GetTickCount64();
    if (now >= deadline) { err = WAIT_TIMEOUT; break; }
    ResetEvent(ov.hEvent);
    if (!ReadFile(h, ack + got, sizeof ack - got, NULL, &ov) && (err = GetLastError()) != ERROR_IO_PENDING) break;
    if ((err = io_wait(h, &ov, (DWORD)(deadline - now), &n))) break;
    if (!n) { err = ERROR_BROKEN_PIPE; break; }
    got += n;
  }
done:
  if (got == 17 && ack[0] == 'A') {
    printf("send ok=1 ack=");
    printhex(ack + 1, 16);
    printf("\n");
  } else {
    printf("send ok=0 got=%lu error=%lu\n", got, err);
  }
  CloseHandle(ov.hEvent);
  CloseHandle(h);
  return 0;
}

static int cmd_hold(const wchar_t *pipe, DWORD ms) {
  HANDLE h = open_pipe(pipe);
  if (h == INVALID_HANDLE_VALUE) { printf("hold open=0 error=%lu\n", GetLastError()); fflush(stdout); return 1; }
  printf("held\n");
  fflush(stdout);
  Sleep(ms);
  CloseHandle(h);
  return 0;
}

int wmain(int argc, wchar_t **argv) {
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  if (argc >= 3 && !wcscmp(argv[1], L"config")) return cmd_config(argv[2]);
  if (argc == 4 && !wcscmp(argv[1], L"send")) { int rc = cmd_send(argv[2], (DWORD)_wtoi(argv[3])); fflush(stdout); return rc; }
  if (argc == 4 && !wcscmp(argv[1], L"hold")) return cmd_hold(argv[2], (DWORD)_wtoi(argv[3]));
  if (argc < 3) {
    fprintf(stderr, "usage: harness config <file> | notify <dll> <user> <n> | badargs <dll> | wild <dll> | memscan <dll> <user> <mask> | vectors <dll>\n");
    return 2;
  }
  load(argv[2]);
  int rc;
  if (!wcscmp(argv[1], L"notify") && argc == 5) rc = cmd_notify(_wtoi(argv[4]), argv[3]);
  else if (!wcscmp(argv[1], L"threads") && argc == 6) rc = cmd_threads(argv[3], _wtoi(argv[4]), _wtoi(argv[5]));
  else if (!wcscmp(argv[1], L"badargs")) rc = cmd_badargs();
  else if (!wcscmp(argv[1], L"wild")) rc = cmd_wild();
  else if (!wcscmp(argv[1], L"memscan") && argc == 5) rc = cmd_memscan(argv[3], (BYTE)_wtoi(argv[4]));
  else if (!wcscmp(argv[1], L"vectors")) rc = cmd_vectors();
  else { fprintf(stderr, "unknown command\n"); rc = 2; }
  fflush(stdout);
  return rc;
}
