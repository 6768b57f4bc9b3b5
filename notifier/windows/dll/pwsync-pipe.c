/*
 * pwsync-pipe.exe: the notifier's end of the filter DLL's named pipe, on a Windows DC.
 *
 * Node cannot set a pipe's DACL, so this small native server holds the pipe instead: it creates
 * HKLM\SOFTWARE\pwsync\PipeName with the DACL D:P(A;;GA;;;SY) (only SYSTEM may open it, i.e.
 * LSASS and the DLL in it), PIPE_REJECT_REMOTE_CLIENTS, and FILE_FLAG_FIRST_PIPE_INSTANCE (a second
 * server, or a squatter that came first, makes it fail at start rather than share the name). Per
 * connection it reads one `u32 len | frame` (notifier/windows/frame.ts), checks its structure as
 * frame.ts decodeFrame does, writes it atomically into <SpoolDir>\new under the DLL's file-name
 * scheme (tmp\ then MoveFileEx, flushed first), and only then answers "A" | changeId. A frame that
 * is malformed or cannot be made durable gets no answer: the DLL's wait runs out and it spools the
 * frame itself. The notifier drains new\ (spool-drain.ts) as if the DLL had spooled the frame.
 *
 * A frame holds only sealed envelopes; still, nothing of a frame but its change id and length is
 * ever logged.
 *
 *   pwsync-pipe.exe                 as the Windows service "pwsync-pipe" (started by the SCM)
 *   pwsync-pipe.exe --console       in the foreground until Ctrl+C
 *     [--pipe \\.\pipe\NAME] [--spool DIR]   instead of the registry's PipeName / SpoolDir
 *     [--log FILE]                   log lines also to FILE (service: <SpoolDir>\pwsync-pipe.log)
 *     [--ready FILE]                 written once every instance exists (tests)
 *   pwsync-pipe.exe --print-sddl \\.\pipe\NAME   opens the pipe for READ_CONTROL only and prints
 *                                    its DACL as SDDL ("sddl=..."), or why it cannot
 *
 * Exit codes: 0 stopped, 2 usage/configuration, 3 the pipe is already served by another process,
 * 4 other start failure. Imports: kernel32, advapi32 and the C runtime only.
 *
 * mingw-w64: x86_64-w64-mingw32-gcc -O2 -municode -o pwsync-pipe.exe pwsync-pipe.c -ladvapi32
 * MSVC:      cl /nologo /O2 /W4 /GS /DUNICODE /D_UNICODE pwsync-pipe.c advapi32.lib
 */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0A00
#endif
#include <windows.h>
#include <sddl.h>
#include <aclapi.h>
#include <stdio.h>
#include <string.h>
#include "spool-common.h"

#define SERVICE_NAME L"pwsync-pipe"
#define INSTANCES 4
#define MAX_FRAME (1024u * 1024u)     /* frame.ts MAX_FRAME */
#define MAX_ENVELOPE (64u * 1024u)
#define MIN_ENVELOPE 47u
#define MAX_TARGETS 64u
#define MAX_NAME 256u
#define ENV_CHANGE_ID 23
#define ENV_CHANGE_TIME 39
#define READ_MS 5000                  /* a whole frame must arrive within this (the DLL waits ≤ 2 s) */
#define LINGER_MS 2000                /* after the ack, how long the client may take to read it */
#define PIPE_BUF 65536
#define SDDL_SYSTEM_ONLY L"D:P(A;;GA;;;SY)"
#define LOG_MAX (1024 * 1024)

#ifndef PIPE_REJECT_REMOTE_CLIENTS
#define PIPE_REJECT_REMOTE_CLIENTS 0x00000008
#endif

static WCHAR g_pipe[256];
static WCHAR g_spool[MAX_PATH];
static WCHAR g_log[MAX_PATH];
static WCHAR g_ready[MAX_PATH];
static BOOL g_console;
static HANDLE g_stop;
static SRWLOCK g_logLock = SRWLOCK_INIT;
static volatile LONG g_acked, g_refused;

static SERVICE_STATUS_HANDLE g_svc;
static SERVICE_STATUS g_svcStatus;

/* ---------- log: one line per event, to stderr (console) and to the log file ---------- */

static void logf_(const char *level, const char *fmt, ...) {
  char line[1024];
  SYSTEMTIME t;
  va_list ap;
  GetSystemTime(&t);
  int n = _snprintf(line, sizeof line - 3, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ %s pid=%lu ", t.wYear, t.wMonth, t.wDay,
                    t.wHour, t.wMinute, t.wSecond, t.wMilliseconds, level, GetCurrentProcessId());
  if (n < 0) n = 0;
  va_start(ap, fmt);
  int m = _vsnprintf(line + n, sizeof line - 3 - n, fmt, ap);
  va_end(ap);
  n = m < 0 ? (int)sizeof line - 3 : n + m;
  line[n++] = '\r';
  line[n++] = '\n';
  line[n] = 0;
  AcquireSRWLockExclusive(&g_logLock);
  if (g_console) {
    fputs(line, stderr);
    fflush(stderr);
  }
  if (g_log[0]) {
    HANDLE h = CreateFileW(g_log, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h != INVALID_HANDLE_VALUE) {
      LARGE_INTEGER size;
      DWORD w;
      if (GetFileSizeEx(h, &size) && size.QuadPart > LOG_MAX) { /* bounded: keep one older file */
        WCHAR old[MAX_PATH + 8];
        CloseHandle(h);
        _snwprintf(old, MAX_PATH + 7, L"%ls.old", g_log);
        old[MAX_PATH + 7] = 0;
        MoveFileExW(g_log, old, MOVEFILE_REPLACE_EXISTING);
        h = CreateFileW(g_log, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
      }
      if (h != INVALID_HANDLE_VALUE) {
        WriteFile(h, line, (DWORD)n, &w, NULL);
        CloseHandle(h);
      }
    }
  }
  ReleaseSRWLockExclusive(&g_logLock);
}
#define LOG_INFO(...) logf_("info", __VA_ARGS__)
#define LOG_WARN(...) logf_("warn", __VA_ARGS__)
#define LOG_ERROR(...) logf_("error", __VA_ARGS__)

/* ---------- configuration (as the DLL reads it) ---------- */

/* Fills what the command line left empty from HKLM\SOFTWARE\pwsync; NULL or why it cannot run. */
static const char *load_config(void) {
  HKEY k;
  WCHAR pipe[256], spool[MAX_PATH];
  if (!g_pipe[0] || !g_spool[0]) {
    if (RegOpenKeyExW(HKEY_LOCAL_MACHINE, L"SOFTWARE\\pwsync", 0, KEY_READ | KEY_WOW64_64KEY, &k) != ERROR_SUCCESS)
      return "registry key HKLM\\SOFTWARE\\pwsync is missing: run pwsync notifier install";
    reg_sz(k, L"PipeName", pipe, 256);
    reg_sz(k, L"SpoolDir", spool, MAX_PATH);
    RegCloseKey(k);
    if (!g_pipe[0]) lstrcpynW(g_pipe, pipe, 256);
    if (!g_spool[0]) lstrcpynW(g_spool, spool, MAX_PATH);
  }
  if (!g_pipe[0]) return "PipeName is not set (HKLM\\SOFTWARE\\pwsync): the DLL spools only, there is nothing to serve";
  if (_wcsnicmp(g_pipe, L"\\\\.\\pipe\\", 9) != 0) return "PipeName must start with \\\\.\\pipe\\";
  if (!g_spool[0]) return "SpoolDir is not set (HKLM\\SOFTWARE\\pwsync)";
  return NULL;
}

/* ---------- spool (as pwsyncfilter.c spool_once) ---------- */

/* tmp\<name>.<thread>.pipe.tmp, written and flushed, then moved to new\<name> (write-through). A
 * frame already in new\ under that name holds the same change: that counts as durable. */
static DWORD spool_once(const WCHAR *name, const BYTE *frame, DWORD len) {
  WCHAR tmpName[96], tmp[MAX_PATH + 120], dst[MAX_PATH + 120];
  DWORD w = 0, err = 0;
  _snwprintf(tmpName, 95, L"%ls.%lx.pipe.tmp", name, GetCurrentThreadId());
  tmpName[95] = 0;
  path_join(tmp, g_spool, L"tmp", tmpName);
  path_join(dst, g_spool, L"new", name);
  HANDLE h = CreateFileW(tmp, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
  if (h == INVALID_HANDLE_VALUE) return GetLastError();
  if (!WriteFile(h, frame, len, &w, NULL)) err = GetLastError();
  else if (w != len) err = ERROR_DISK_FULL;
  if (!err && !FlushFileBuffers(h)) err = GetLastError();
  CloseHandle(h);
  if (!err && !MoveFileExW(tmp, dst, MOVEFILE_WRITE_THROUGH)) {
    err = GetLastError();
    if (err == ERROR_ALREADY_EXISTS || err == ERROR_FILE_EXISTS) err = 0; /* the same change, already durable */
  }
  DeleteFileW(tmp); /* gone after a move; left only after a failure */
  return err;
}

static DWORD spool(const BYTE *frame, DWORD len, const BYTE changeId[16], ULONGLONG changeTime, WCHAR name[64]) {
  DWORD err;
  spool_name(changeId, changeTime, name);
  err = spool_once(name, frame, len);
  if (err == ERROR_PATH_NOT_FOUND && !(err = ensure_spool_dirs(g_spool))) err = spool_once(name, frame, len);
  return err;
}

/* ---------- frame check (frame.ts decodeFrame) ---------- */

static DWORD get16(const BYTE *p) { return ((DWORD)p[0] << 8) | p[1]; }
static DWORD get32(const BYTE *p) { return ((DWORD)p[0] << 24) | ((DWORD)p[1] << 16) | ((DWORD)p[2] << 8) | p[3]; }
static ULONGLONG get64(const BYTE *p) { return ((ULONGLONG)get32(p) << 32) | get32(p + 4); }

/* NULL when the frame is well formed (then *changeTime is its envelopes' change time), else why not. */
static const char *check_frame(const BYTE *f, DWORD len, ULONGLONG *changeTime) {
  DWORD n, at = 22;
  const BYTE *names[MAX_TARGETS];
  DWORD nameLens[MAX_TARGETS];
  if (len > MAX_FRAME) return "frame longer than 1 MiB";
  if (len < 22) return "frame shorter than its fixed head";
  if (memcmp(f, "PWC1", 4) != 0) return "bad magic (expected PWC1)";
  n = get16(f + 20);
  if (n == 0) return "frame holds no envelope";
  if (n > MAX_TARGETS) return "frame holds more than 64 envelopes";
  for (DWORD i = 0; i < n; i++) {
    if (at + 2 > len) return "frame truncated at a target name";
    DWORD nameLen = get16(f + at);
    at += 2;
    if (nameLen == 0 || nameLen > MAX_NAME || at + nameLen > len) return "bad target name length";
    if (!MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, (const char *)f + at, (int)nameLen, NULL, 0))
      return "target name is not UTF-8";
    for (DWORD j = 0; j < i; j++)
      if (nameLens[j] == nameLen && memcmp(names[j], f + at, nameLen) == 0) return "a target appears twice";
    names[i] = f + at;
    nameLens[i] = nameLen;
    at += nameLen;
    if (at + 4 > len) return "frame truncated at an envelope length";
    DWORD envLen = get32(f + at);
    at += 4;
    if (envLen < MIN_ENVELOPE || envLen > MAX_ENVELOPE || at + envLen > len) return "bad envelope length";
    const BYTE *env = f + at;
    at += envLen;
    if (memcmp(env, "PWSY", 4) != 0) return "not a pwsync envelope";
    if (memcmp(env + ENV_CHANGE_ID, f + 4, 16) != 0) return "envelope bound to another change id than its frame";
    ULONGLONG t = get64(env + ENV_CHANGE_TIME);
    if (t > 9007199254740991ULL) return "impossible change time";
    if (i > 0 && t != *changeTime) return "envelopes disagree on the change time";
    *changeTime = t;
  }
  if (at != len) return "bytes after the last envelope";
  return NULL;
}

/* ---------- pipe I/O with bounded waits ---------- */

/* Waits for an overlapped operation on h until timeoutMs or stop; 0, WAIT_TIMEOUT, ERROR_CANCELLED (stop) or an error. */
static DWORD wait_io(HANDLE h, OVERLAPPED *ov, DWORD timeoutMs, DWORD *n) {
  HANDLE evs[2] = {ov->hEvent, g_stop};
  DWORD w = WaitForMultipleObjects(2, evs, FALSE, timeoutMs);
  if (w != WAIT_OBJECT_0) {
    CancelIoEx(h, ov);
    GetOverlappedResult(h, ov, n, TRUE);
    return w == WAIT_OBJECT_0 + 1 ? ERROR_CANCELLED : WAIT_TIMEOUT;
  }
  return GetOverlappedResult(h, ov, n, FALSE) ? 0 : GetLastError();
}

static DWORD read_full(HANDLE h, HANDLE ev, BYTE *p, DWORD len, ULONGLONG deadline) {
  DWORD got = 0;
  while (got < len) {
    OVERLAPPED ov;
    DWORD n = 0, err = 0;
    ULONGLONG now = GetTickCount64();
    if (now >= deadline) return WAIT_TIMEOUT;
    ZeroMemory(&ov, sizeof ov);
    ResetEvent(ev);
    ov.hEvent = ev;
    if (!ReadFile(h, p + got, len - got, NULL, &ov) && (err = GetLastError()) != ERROR_IO_PENDING && err != ERROR_MORE_DATA) return err;
    err = wait_io(h, &ov, (DWORD)(deadline - now), &n);
    if (err == ERROR_MORE_DATA) err = 0;
    if (err) return err;
    if (n == 0) return ERROR_BROKEN_PIPE;
    got += n;
  }
  return 0;
}

static DWORD write_full(HANDLE h, HANDLE ev, const BYTE *p, DWORD len, DWORD timeoutMs) {
  OVERLAPPED ov;
  DWORD n = 0, err = 0;
  ZeroMemory(&ov, sizeof ov);
  ResetEvent(ev);
  ov.hEvent = ev;
  if (!WriteFile(h, p, len, NULL, &ov) && (err = GetLastError()) != ERROR_IO_PENDING) return err;
  if ((err = wait_io(h, &ov, timeoutMs, &n))) return err;
  return n == len ? 0 : ERROR_WRITE_FAULT;
}

static void hex16(const BYTE *id, char out[33]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) { out[2 * i] = digits[id[i] >> 4]; out[2 * i + 1] = digits[id[i] & 15]; }
  out[32] = 0;
}

/* One connection: a frame in, durable, acknowledged. Never logs the frame's content. */
static void serve(HANDLE h, HANDLE ev, int slot) {
  BYTE head[4], *frame = NULL;
  DWORD len, err;
  ULONGLONG changeTime = 0, deadline = GetTickCount64() + READ_MS;
  const char *why;
  if ((err = read_full(h, ev, head, 4, deadline))) {
    if (err != ERROR_BROKEN_PIPE && err != ERROR_CANCELLED) LOG_WARN("slot=%d no frame length within %u ms (error %lu): connection cut", slot, READ_MS, err);
    return;
  }
  len = get32(head);
  if (len == 0 || len > MAX_FRAME) {
    InterlockedIncrement(&g_refused);
    LOG_WARN("slot=%d frame length %lu out of range (1..%u): not acknowledged, nothing written", slot, len, MAX_FRAME);
    return;
  }
  if (!(frame = (BYTE *)HeapAlloc(GetProcessHeap(), 0, len))) { LOG_ERROR("slot=%d out of memory for %lu bytes", slot, len); return; }
  if ((err = read_full(h, ev, frame, len, deadline))) {
    if (err != ERROR_CANCELLED) LOG_WARN("slot=%d frame of %lu bytes not received whole within %u ms (error %lu): not acknowledged", slot, len, READ_MS, err);
    goto out;
  }
  if ((why = check_frame(frame, len, &changeTime))) {
    InterlockedIncrement(&g_refused);
    LOG_WARN("slot=%d malformed frame of %lu bytes (%s): not acknowledged, nothing written (the DLL spools it; the drain sets it aside)", slot, len, why);
    goto out;
  }
  char id[33];
  WCHAR name[64];
  hex16(frame + 4, id);
  if ((err = spool(frame, len, frame + 4, changeTime, name))) {
    LOG_ERROR("slot=%d changeId=%s cannot be made durable in the spool folder (error %lu): not acknowledged (the DLL spools it itself)", slot, id, err);
    goto out;
  }
  BYTE ack[17];
  ack[0] = 'A';
  memcpy(ack + 1, frame + 4, 16);
  if ((err = write_full(h, ev, ack, sizeof ack, LINGER_MS))) {
    LOG_WARN("slot=%d changeId=%s durable, but the acknowledgement could not be sent (error %lu): the DLL spools it too, the drain drops the duplicate", slot, id, err);
    goto out;
  }
  InterlockedIncrement(&g_acked);
  LOG_INFO("slot=%d changeId=%s bytes=%lu change received over the pipe and made durable", slot, id, len);
  /* Let the client read the ack before the instance is disconnected (that would discard it). */
  read_full(h, ev, head, 1, GetTickCount64() + LINGER_MS);
out:
  HeapFree(GetProcessHeap(), 0, frame);
}

typedef struct {
  HANDLE pipe;
  int slot;
} Slot;

static DWORD WINAPI instance_loop(void *arg) {
  Slot *s = (Slot *)arg;
  HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (!ev) return 1;
  while (WaitForSingleObject(g_stop, 0) != WAIT_OBJECT_0) {
    OVERLAPPED ov;
    DWORD n = 0, err = 0;
    ZeroMemory(&ov, sizeof ov);
    ResetEvent(ev);
    ov.hEvent = ev;
    if (!ConnectNamedPipe(s->pipe, &ov)) {
      err = GetLastError();
      if (err == ERROR_IO_PENDING) {
        HANDLE evs[2] = {ev, g_stop};
        if (WaitForMultipleObjects(2, evs, FALSE, INFINITE) != WAIT_OBJECT_0) { /* stopping */
          CancelIoEx(s->pipe, &ov);
          GetOverlappedResult(s->pipe, &ov, &n, TRUE);
          break;
        }
        err = GetOverlappedResult(s->pipe, &ov, &n, FALSE) ? 0 : GetLastError();
      } else if (err == ERROR_PIPE_CONNECTED) {
        err = 0;
      }
    }
    if (!err) serve(s->pipe, ev, s->slot);
    else if (err != ERROR_NO_DATA) {
      LOG_WARN("slot=%d ConnectNamedPipe failed (error %lu)", s->slot, err);
      Sleep(100); /* bounded retry rate */
    }
    DisconnectNamedPipe(s->pipe);
  }
  CloseHandle(ev);
  return 0;
}

/* ---------- the pipe ---------- */

/* The DACL: SYSTEM only (LSASS, where the DLL runs). No test switch widens it: under Wine 8 the
 * pipe's DACL is stored and read back but not enforced on open, so the tests need none. */
static BOOL make_sd(PSECURITY_DESCRIPTOR *sd) {
  return ConvertStringSecurityDescriptorToSecurityDescriptorW(SDDL_SYSTEM_ONLY, SDDL_REVISION_1, sd, NULL);
}

/* The DACL as the object holds it, read back through the handle. */
static void dacl_of(HANDLE h, char *out, DWORD cap) {
  PSECURITY_DESCRIPTOR sd = NULL;
  WCHAR *s = NULL;
  DWORD err = GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, NULL, NULL, &sd);
  if (err) { _snprintf(out, cap - 1, "(GetSecurityInfo error %lu)", err); out[cap - 1] = 0; return; }
  if (ConvertSecurityDescriptorToStringSecurityDescriptorW(sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &s, NULL)) {
    if (!WideCharToMultiByte(CP_UTF8, 0, s, -1, out, (int)cap, NULL, NULL)) out[0] = 0;
    LocalFree(s);
  } else {
    _snprintf(out, cap - 1, "(ConvertSecurityDescriptorToStringSecurityDescriptor error %lu)", GetLastError());
    out[cap - 1] = 0;
  }
  LocalFree(sd);
}

static void set_status(DWORD state, DWORD exitCode) {
  if (!g_svc) return;
  g_svcStatus.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
  g_svcStatus.dwCurrentState = state;
  g_svcStatus.dwControlsAccepted = state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN : 0;
  g_svcStatus.dwWin32ExitCode = exitCode ? ERROR_SERVICE_SPECIFIC_ERROR : NO_ERROR;
  g_svcStatus.dwServiceSpecificExitCode = exitCode;
  g_svcStatus.dwWaitHint = state == SERVICE_RUNNING || state == SERVICE_STOPPED ? 0 : 10000;
  g_svcStatus.dwCheckPoint = state == SERVICE_RUNNING || state == SERVICE_STOPPED ? 0 : g_svcStatus.dwCheckPoint + 1;
  SetServiceStatus(g_svc, &g_svcStatus);
}

/* Serves until g_stop; returns the process exit code. */
static int run_server(void) {
  const char *why = load_config();
  PSECURITY_DESCRIPTOR sd = NULL;
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, FALSE};
  HANDLE threads[INSTANCES];
  Slot slots[INSTANCES];
  int made = 0, started = 0, rc = 0;
  DWORD err;
  if (why) { LOG_ERROR("cannot start: %s", why); return 2; }
  if (!g_log[0] && !g_console) path_join(g_log, g_spool, L"pwsync-pipe.log", NULL);
  if ((err = ensure_spool_dirs(g_spool))) {
    LOG_ERROR("cannot create the spool folders under %ls (error %lu): its parent folder must exist", g_spool, err);
    return 4;
  }
  if (!make_sd(&sd)) { LOG_ERROR("cannot build the pipe's security descriptor (error %lu)", GetLastError()); return 4; }
  sa.lpSecurityDescriptor = sd;
  for (int i = 0; i < INSTANCES; i++) {
    DWORD open = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (i == 0 ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0);
    HANDLE h = CreateNamedPipeW(g_pipe, open, PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                                INSTANCES, PIPE_BUF, PIPE_BUF, 0, &sa);
    if (h == INVALID_HANDLE_VALUE) {
      err = GetLastError();
      if (i == 0 && (err == ERROR_ACCESS_DENIED || err == ERROR_PIPE_BUSY || err == ERROR_ALREADY_EXISTS)) {
        LOG_ERROR("another process already serves the pipe %ls (error %lu): stop it (another pwsync-pipe, or a squatter) before starting this one", g_pipe, err);
        rc = 3;
      } else {
        LOG_ERROR("cannot create instance %d of the pipe %ls (error %lu)", i + 1, g_pipe, err);
        rc = 4;
      }
      break;
    }
    if (i == 0) {
      char back[300];
      dacl_of(h, back, sizeof back);
      LOG_INFO("pipe %ls created; its DACL read back: %s", g_pipe, back);
    }
    slots[i].pipe = h;
    slots[i].slot = i;
    made++;
  }
  LocalFree(sd);
  for (int i = 0; i < made && !rc; i++) {
    if (!(threads[i] = CreateThread(NULL, 0, instance_loop, &slots[i], 0, NULL))) {
      LOG_ERROR("cannot start a thread (error %lu)", GetLastError());
      rc = 4;
    } else started++;
  }
  if (!rc) {
    set_status(SERVICE_RUNNING, 0);
    LOG_INFO("serving %ls with %d instances; spool folder %ls", g_pipe, INSTANCES, g_spool);
    if (g_ready[0]) {
      HANDLE r = CreateFileW(g_ready, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
      if (r != INVALID_HANDLE_VALUE) {
        char pid[32];
        DWORD w;
        int n = _snprintf(pid, sizeof pid, "%lu\r\n", GetCurrentProcessId());
        WriteFile(r, pid, (DWORD)n, &w, NULL);
        CloseHandle(r);
      }
    }
    WaitForSingleObject(g_stop, INFINITE);
    set_status(SERVICE_STOP_PENDING, 0);
    /* Every wait in a thread also waits on g_stop: they end within one I/O cancel. */
    LOG_INFO("stopping: %ld acknowledged, %ld refused", g_acked, g_refused);
  }
  SetEvent(g_stop);
  if (started && WaitForMultipleObjects((DWORD)started, threads, TRUE, 10000) == WAIT_TIMEOUT)
    LOG_WARN("an instance did not stop within 10 s");
  for (int i = 0; i < started; i++) CloseHandle(threads[i]);
  for (int i = 0; i < made; i++) CloseHandle(slots[i].pipe);
  return rc;
}

/* ---------- service and console ---------- */

static DWORD WINAPI svc_handler(DWORD control, DWORD type, void *data, void *ctx) {
  (void)type; (void)data; (void)ctx;
  if (control == SERVICE_CONTROL_STOP || control == SERVICE_CONTROL_SHUTDOWN) {
    set_status(SERVICE_STOP_PENDING, 0);
    SetEvent(g_stop);
    return NO_ERROR;
  }
  return control == SERVICE_CONTROL_INTERROGATE ? NO_ERROR : ERROR_CALL_NOT_IMPLEMENTED;
}

static void WINAPI svc_main(DWORD argc, WCHAR **argv) {
  (void)argc; (void)argv;
  g_svc = RegisterServiceCtrlHandlerExW(SERVICE_NAME, svc_handler, NULL);
  if (!g_svc) return;
  set_status(SERVICE_START_PENDING, 0);
  int rc = run_server();
  set_status(SERVICE_STOPPED, (DWORD)rc);
}

static BOOL WINAPI console_handler(DWORD type) {
  (void)type;
  SetEvent(g_stop);
  return TRUE;
}

/* This process's user as a string SID (what a DACL would have to name). */
static void own_sid(char *out, DWORD cap) {
  HANDLE tok;
  BYTE buf[256];
  DWORD cb;
  WCHAR *sid = NULL;
  out[0] = 0;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok)) return;
  if (GetTokenInformation(tok, TokenUser, buf, sizeof buf, &cb) && ConvertSidToStringSidW(((TOKEN_USER *)buf)->User.Sid, &sid)) {
    WideCharToMultiByte(CP_UTF8, 0, sid, -1, out, (int)cap, NULL, NULL);
    LocalFree(sid);
  }
  CloseHandle(tok);
}

/* Opens the pipe for READ_CONTROL only and prints its DACL: what a client is up against. */
static int print_sddl(const WCHAR *name) {
  HANDLE h;
  char out[400], me[200];
  own_sid(me, sizeof me);
  printf("client=%s\n", me);
  h = CreateFileW(name, READ_CONTROL, 0, NULL, OPEN_EXISTING, 0, NULL);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD err = GetLastError();
    printf("error=%lu %s\n", err, err == ERROR_ACCESS_DENIED ? "access denied: the DACL does not let this user open the pipe"
                                  : err == ERROR_FILE_NOT_FOUND ? "no such pipe" : "cannot open the pipe");
    return 1;
  }
  dacl_of(h, out, sizeof out);
  CloseHandle(h);
  printf("sddl=%s\n", out);
  return out[0] == '(' ? 1 : 0;
}

static int usage(void) {
  fprintf(stderr, "usage: pwsync-pipe [--console [--pipe \\\\.\\pipe\\NAME] [--spool DIR] [--log FILE] [--ready FILE]]\n"
                  "       pwsync-pipe --print-sddl \\\\.\\pipe\\NAME\n"
                  "Without --console it runs as the Windows service %ls (sc.exe start %ls).\n", SERVICE_NAME, SERVICE_NAME);
  return 2;
}

int wmain(int argc, WCHAR **argv) {
  for (int i = 1; i < argc; i++) {
    const WCHAR *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!wcscmp(a, L"--console")) g_console = TRUE;
    else if (!wcscmp(a, L"--print-sddl") && v) return print_sddl(v);
    else if (!wcscmp(a, L"--pipe") && v) { lstrcpynW(g_pipe, v, 256); i++; }
    else if (!wcscmp(a, L"--spool") && v) { lstrcpynW(g_spool, v, MAX_PATH); i++; }
    else if (!wcscmp(a, L"--log") && v) { lstrcpynW(g_log, v, MAX_PATH); i++; }
    else if (!wcscmp(a, L"--ready") && v) { lstrcpynW(g_ready, v, MAX_PATH); i++; }
    else return usage();
  }
  if (!(g_stop = CreateEventW(NULL, TRUE, FALSE, NULL))) return 4;
  if (g_console) {
    SetConsoleCtrlHandler(console_handler, TRUE);
    return run_server();
  }
  SERVICE_TABLE_ENTRYW table[] = {{(WCHAR *)SERVICE_NAME, svc_main}, {NULL, NULL}};
  if (!StartServiceCtrlDispatcherW(table)) {
    DWORD err = GetLastError();
    if (err == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
      fprintf(stderr, "pwsync-pipe: not started by the service manager; use --console to run it in the foreground\n");
      return usage();
    }
    fprintf(stderr, "pwsync-pipe: StartServiceCtrlDispatcher failed (error %lu)\n", err);
    return 4;
  }
  return 0;
}
