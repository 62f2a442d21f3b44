/** Says once per run which storage engines the suite covers. */
export default function setup(): void {
  if (process.env.TRESOR_TEST_PG) {
    process.stdout.write(`[tresor] PostgreSQL suite enabled against ${new URL(process.env.TRESOR_TEST_PG).host}\n`);
  } else {
    process.stdout.write(
      '[tresor] PostgreSQL suite SKIPPED: set TRESOR_TEST_PG=postgres://postgres@127.0.0.1:5432/postgres to run it (CI does)\n',
    );
  }
}
