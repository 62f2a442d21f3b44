import { PassThrough } from 'node:stream';
import type { FastifyReply } from 'fastify';

/**
 * Long work answered with JSON lines: `work` reports progress through `line`, and its result (or its
 * error as `{ "error": message }`) is the last line. The status is 200 once streaming has begun, so
 * callers check what comes before it (authentication, input) and throw there.
 */
export function streamJsonLines(reply: FastifyReply, work: (line: (value: unknown) => void) => Promise<unknown>): FastifyReply {
  const out = new PassThrough();
  const line = (value: unknown) => out.write(`${JSON.stringify(value)}\n`);
  void work(line)
    .then((result) => out.end(`${JSON.stringify(result)}\n`))
    .catch((error: Error) => out.end(`${JSON.stringify({ error: error.message })}\n`));
  return reply.type('application/x-ndjson; charset=utf-8').send(out);
}
