// Immich's own missing-file check, as its server does it (server/src/services/integrity.service.ts,
// handleMissingFiles, in the v3 integrity checks): the stored paths in batches of
// JOBS_LIBRARY_PAGINATION_SIZE (10,000), each batch one Promise.all of fs.promises.stat, an
// error meaning "missing". Node runs the stats on libuv's thread pool (UV_THREADPOOL_SIZE,
// default 4), so at most 4 are in flight whatever the batch size.
// Usage: node benches/immich_missing_files.mjs PATHS_FILE   (one host path per line)
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';

const BATCH = 10_000;
const paths = readFileSync(process.argv[2], 'utf8').split('\n').filter((p) => p.length > 0);
const started = process.hrtime.bigint();
let missing = 0;
for (let i = 0; i < paths.length; i += BATCH) {
  const results = await Promise.all(
    paths.slice(i, i + BATCH).map((path) =>
      stat(path)
        .then(() => true)
        .catch(() => false),
    ),
  );
  missing += results.filter((exists) => !exists).length;
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({ files: paths.length, missing, seconds }));
