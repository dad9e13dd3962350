import { VirtualKubeletError } from '../errors.js';

/**
 * The peer broke the SPDY/3.1 protocol (bad frame, bad compression, oversized frame). The
 * connection is answered with GOAWAY PROTOCOL_ERROR and closed; code `InvalidInput`.
 */
export class SpdyProtocolError extends VirtualKubeletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('InvalidInput', message, options);
    this.name = 'SpdyProtocolError';
  }
}
