// Errors the shim throws carry `.name` = a py_worker error class name (py_worker/errors.py),
// so the Python side can re-raise the same class without parsing messages.

/** An Error whose name is a py_worker class name, with structured fields. */
export function namedError(name, message, fields = {}) {
  const err = /** @type {Error & {fields: object}} */ (new Error(message));
  err.name = name;
  err.fields = fields;
  return err;
}
