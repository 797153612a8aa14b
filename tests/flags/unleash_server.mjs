// Starts unleash-server (installed by scripts/install-unleash.sh) for the Unleash provider tests.
// argv: <unleash-server package dir> <postgres port> <database> <http port> <admin token>
// Everything listens on 127.0.0.1; no version check, no telemetry. Prints "ready" once serving.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [pkgDir, pgPort, database, httpPort, adminToken] = process.argv.slice(2);
const { start } = await import(pathToFileURL(join(pkgDir, 'dist/lib/server-impl.js')).href);

const unleash = await start({
  db: {
    host: '127.0.0.1',
    port: Number(pgPort),
    user: 'postgres',
    password: '',
    database,
    ssl: false,
    pool: { min: 0, max: 4 },
  },
  server: {
    host: '127.0.0.1',
    port: Number(httpPort),
    unleashUrl: `http://127.0.0.1:${httpPort}`,
    gracefulShutdownEnable: true,
  },
  authentication: {
    type: 'open-source',
    createAdminUser: false,
    initApiTokens: [
      { tokenName: 'orchestrator-tests', type: 'admin', projects: ['*'], environment: '*', secret: adminToken },
    ],
  },
  versionCheck: { enable: false },
  telemetry: false,
  logLevel: 'warn',
});

const stop = async () => {
  await unleash.stop();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
console.log('ready');
