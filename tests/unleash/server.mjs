// A real unleash-server (7.4.1, from this folder's lock file) for canary's Unleash
// actuator tests (tests/it/unleash_harness.rs) and benchmark (scripts/bench-unleash.sh).
//
// Settings come from environment variables so the Rust harness and the shell script
// start it the same way:
//   UNLEASH_TEST_DATABASE_URL  PostgreSQL database Unleash migrates and owns (required)
//   UNLEASH_TEST_PORT          port to listen on, on 127.0.0.1 (required)
//   UNLEASH_TEST_ADMIN_TOKEN   the admin API token to create at start-up (required);
//                              Unleash wants admin tokens shaped `*:*.SECRET`
// Everything that would reach the internet (version check, telemetry) is off, logging is
// errors only, and the process prints `unleash ready on PORT` once it listens.

import { start, LogLevel } from 'unleash-server';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`server.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const databaseUrl = required('UNLEASH_TEST_DATABASE_URL');
const port = Number.parseInt(required('UNLEASH_TEST_PORT'), 10);
const adminToken = required('UNLEASH_TEST_ADMIN_TOKEN');

const unleash = await start({
  db: { connectionString: databaseUrl, ssl: false, pool: { min: 0, max: 4 } },
  server: { host: '127.0.0.1', port, enableRequestLogger: false },
  logLevel: LogLevel.error,
  versionCheck: { enable: false },
  telemetry: false,
  authentication: {
    type: 'open-source',
    enableApiToken: true,
    createAdminUser: false,
    initApiTokens: [
      {
        secret: adminToken,
        tokenName: 'canary-tests',
        type: 'admin',
        projects: ['*'],
        environment: '*',
      },
    ],
  },
});

console.log(`unleash ready on ${port}`);

async function stop() {
  try {
    await unleash.stop();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
