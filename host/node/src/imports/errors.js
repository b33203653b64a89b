// The WIT's error records. An import that throws a plain object (not an
// Error) makes jco return it as the `err` of the function's `result`.

const IO_KINDS = {
  ENOENT: 'not-found',
  EEXIST: 'already-exists',
  EACCES: 'permission-denied',
  EPERM: 'permission-denied',
  ENOSPC: 'no-space',
  EDQUOT: 'no-space',
  EINTR: 'interrupted',
  EAGAIN: 'would-block',
  ENOTSUP: 'not-supported',
  ENOSYS: 'not-supported',
  EXDEV: 'not-supported',
  ENOTDIR: 'not-a-file',
  EISDIR: 'not-a-file',
  ELOOP: 'escapes-sandbox',
};

export function ioError(kind, message) {
  return { kind, message };
}

/** A Node file-system error, said of `what`. */
export function fromNode(e, what) {
  if (e && typeof e === 'object' && 'kind' in e && !(e instanceof Error)) return e;
  const kind = IO_KINDS[e?.code] ?? 'other';
  return ioError(kind, `${what}: ${e?.message ?? e}`);
}

export function cloudError(kind, message) {
  return { kind, message };
}

/** An io-error as a cloud-error (local trouble while moving cloud data). */
export function cloudFromIo(e) {
  const err = fromNode(e, 'cloud');
  const kind = err.kind === 'not-found' ? 'not-found' : err.kind === 'no-space' ? 'local-no-space' : 'other';
  return cloudError(kind, err.message);
}
