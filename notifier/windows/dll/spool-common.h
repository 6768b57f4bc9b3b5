/*
 * What the filter DLL (pwsyncfilter.c) and the pipe server (pwsync-pipe.c) share about the spool
 * folder and the registry, so that both write the same files the notifier drains in order
 * (notifier/windows/spool.ts): <SpoolDir>\tmp\ for writing, <SpoolDir>\new\<name> once durable,
 * named <changeTime as 16 hex digits>-<changeId as 32 hex digits>.pwc.
 * Static functions only: each program includes it once. Needs <windows.h> and <sddl.h>.
 */
#ifndef PWSYNC_SPOOL_COMMON_H
#define PWSYNC_SPOOL_COMMON_H

/* out = dir \ a [\ b]; dir is at most MAX_PATH, the leaves are ours and short. */
static void path_join(WCHAR *out, const WCHAR *dir, const WCHAR *a, const WCHAR *b) {
  lstrcpynW(out, dir, MAX_PATH);
  lstrcatW(out, L"\\");
  lstrcatW(out, a);
  if (b) { lstrcatW(out, L"\\"); lstrcatW(out, b); }
}

/* A REG_SZ value, or "" (and the error) when it is missing or not a string. */
static DWORD reg_sz(HKEY k, const WCHAR *name, WCHAR *out, DWORD cap) {
  DWORD cb = cap * sizeof(WCHAR);
  LSTATUS s = RegGetValueW(k, NULL, name, RRF_RT_REG_SZ, NULL, out, &cb);
  if (s != ERROR_SUCCESS) out[0] = 0;
  return (DWORD)s;
}

/* Creates dir with the spool ACL (SYSTEM and Administrators only) unless it exists. */
static DWORD make_dir(const WCHAR *dir) {
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, FALSE};
  DWORD err = 0;
  if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(L"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)", SDDL_REVISION_1,
                                                            &sa.lpSecurityDescriptor, NULL))
    return GetLastError();
  if (!CreateDirectoryW(dir, &sa)) {
    err = GetLastError();
    if (err == ERROR_ALREADY_EXISTS) err = 0;
  }
  LocalFree(sa.lpSecurityDescriptor);
  return err;
}

/* The spool folder with its tmp\ and new\ (its parent must exist). */
static DWORD ensure_spool_dirs(const WCHAR *spool) {
  WCHAR p[MAX_PATH + 8];
  DWORD err = make_dir(spool);
  if (err) return err;
  path_join(p, spool, L"tmp", NULL);
  if ((err = make_dir(p))) return err;
  path_join(p, spool, L"new", NULL);
  return make_dir(p);
}

/* name = <changeTime %016llx>-<changeId hex>.pwc: file-name order is change order. */
static void spool_name(const BYTE changeId[16], ULONGLONG changeTime, WCHAR name[64]) {
  static const WCHAR digits[] = L"0123456789abcdef";
  DWORD at = 0;
  for (int i = 15; i >= 0; i--) name[at++] = digits[(changeTime >> (4 * i)) & 15];
  name[at++] = L'-';
  for (int i = 0; i < 16; i++) { name[at++] = digits[changeId[i] >> 4]; name[at++] = digits[changeId[i] & 15]; }
  lstrcpyW(name + at, L".pwc");
}

#endif
