// `@kit.BasicServicesKit`: the error every API call fails with.

/** An API error: the seed's numeric `code` and a message. */
export class BusinessError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = 'BusinessError';
    this.code = code;
    if (data !== undefined) this.data = data;
  }
}
