/*
 * pipeserver.exe: a stand-in notifier end of the hook pipe, for the DLL's fault tests. Test-only.
 *
 *   pipeserver <pipe> ack <dir>   reads u32 len | frame, writes the frame to <dir>\<changeId>.frame
 *                                 (flushed), then answers "A" | changeId
 *   pipeserver <pipe> noack       reads the frame and never answers
 *   pipeserver <pipe> close       hangs up at once
 *   pipeserver <pipe> busy        one instance, held by its own client: others get ERROR_PIPE_BUSY
 *
 * Prints "listening" once the first instance exists; runs until killed.
 */
#include <windows.h>
#include <stdio.h>
#include <string.h>

static const wchar_t *g_pipe, *g_dir;
static int g_mode; /* 0 ack, 1 noack, 2 close */

static BOOL read_all(HANDLE h, BYTE *p, DWORD n) {
  DWORD got = 0, r = 0;
  while (got < n) {
    if (!ReadFile(h, p + got, n - got, &r, NULL) || !r) return FALSE;
    got += r;
  }
  return TRUE;
}

static DWORD WINAPI serve(void *arg) {
  HANDLE h = (HANDLE)arg;
  BYTE len[4], *frame = NULL;
  DWORD n, w;
  if (g_mode == 2) goto out;
  if (!read_all(h, len, 4)) goto out;
  n = ((DWORD)len[0] << 24) | ((DWORD)len[1] << 16) | ((DWORD)len[2] << 8) | len[3];
  if (n < 20 || n > (16u << 20) || !(frame = (BYTE *)malloc(n)) || !read_all(h, frame, n)) goto out;
  if (g_mode == 1) {
    BYTE b;
    DWORD r;
    ReadFile(h, &b, 1, &r, NULL); /* hold the connection until the client gives up */
    goto out;
  }
  wchar_t path[MAX_PATH];
  int at = _snwprintf(path, MAX_PATH, L"%ls\\", g_dir);
  for (int i = 0; i < 16; i++) at += _snwprintf(path + at, MAX_PATH - at, L"%02x", frame[4 + i]);
  _snwprintf(path + at, MAX_PATH - at, L".frame");
  HANDLE f = CreateFileW(path, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
  if (f == INVALID_HANDLE_VALUE) goto out;
  BOOL ok = WriteFile(f, frame, n, &w, NULL) && w == n && FlushFileBuffers(f);
  CloseHandle(f);
  if (ok) {
    BYTE ack[17];
    ack[0] = 'A';
    memcpy(ack + 1, frame + 4, 16);
    WriteFile(h, ack, sizeof ack, &w, NULL);
    FlushFileBuffers(h);
  }
out:
  free(frame);
  DisconnectNamedPipe(h);
  CloseHandle(h);
  return 0;
}

int wmain(int argc, wchar_t **argv) {
  if (argc < 3) { fprintf(stderr, "usage: pipeserver <pipe> ack <dir> | noack | close | busy\n"); return 2; }
  g_pipe = argv[1];
  g_mode = !wcscmp(argv[2], L"noack") ? 1 : !wcscmp(argv[2], L"close") ? 2 : 0;
  g_dir = argc > 3 ? argv[3] : L".";
  if (!wcscmp(argv[2], L"busy")) {
    HANDLE s = CreateNamedPipeW(g_pipe, PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE | PIPE_WAIT, 1, 4096, 4096, 0, NULL);
    if (s == INVALID_HANDLE_VALUE) { printf("error=CreateNamedPipe %lu\n", GetLastError()); return 1; }
    HANDLE c = CreateFileW(g_pipe, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
    if (c == INVALID_HANDLE_VALUE) { printf("error=CreateFile %lu\n", GetLastError()); return 1; }
    printf("listening\n");
    fflush(stdout);
    Sleep(INFINITE);
  }
  for (BOOL first = TRUE;; first = FALSE) {
    HANDLE h = CreateNamedPipeW(g_pipe, PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE | PIPE_WAIT, PIPE_UNLIMITED_INSTANCES,
                                65536, 65536, 0, NULL);
    if (h == INVALID_HANDLE_VALUE) { printf("error=CreateNamedPipe %lu\n", GetLastError()); return 1; }
    if (first) { printf("listening\n"); fflush(stdout); }
    if (!ConnectNamedPipe(h, NULL) && GetLastError() != ERROR_PIPE_CONNECTED) { CloseHandle(h); continue; }
    HANDLE t = CreateThread(NULL, 0, serve, h, 0, NULL);
    if (t) CloseHandle(t);
  }
}
