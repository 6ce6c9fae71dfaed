/** What `APIPromise.withResponse()` resolves to. */
export interface WithResponse<T> {
  data: T;
  response: Response;
  request_id: string | null | undefined;
  workspace_id: string | null | undefined;
}

const ignore = (): void => undefined;

/**
 * A promise with the public surface of the SDK's `APIPromise`: `await` gives the data, `withResponse()` the data with
 * the `Response` of the attempt that succeeded, `asResponse()` that `Response`. The SDK-internal `_thenUnwrap` is not
 * offered.
 */
export class LimitedAPIPromise<T> extends Promise<T> {
  /** `then`/`catch`/`finally` return plain promises, as they do on `APIPromise`. */
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }

  #result: Promise<WithResponse<T>> | undefined;

  /** Wraps a call's outcome. */
  static from<T>(result: Promise<WithResponse<T>>): LimitedAPIPromise<T> {
    const promise = new LimitedAPIPromise<T>((resolve, reject) => {
      result.then((outcome) => resolve(outcome.data), reject);
    });
    promise.#result = result;
    // A caller who only uses withResponse() must not get an unhandled rejection from this promise; callers who
    // await it still see the error through their own chain.
    Promise.prototype.then.call(promise, undefined, ignore);
    return promise;
  }

  withResponse(): Promise<WithResponse<T>> {
    if (this.#result === undefined) throw new Error('LimitedAPIPromise built without LimitedAPIPromise.from');
    return this.#result;
  }

  async asResponse(): Promise<Response> {
    return (await this.withResponse()).response;
  }
}
