// A real OpenID provider (npm oidc-provider) on loopback for medperf-apply's OIDC tests and local trials.
//
// What it offers, as MedPerf's Auth0 tenant does for its CLI:
//   - the device authorization grant for a public client (`medperf-apply` by default), refresh tokens with
//     rotation when `offline_access` is asked for, and revocation;
//   - the client credentials grant for confidential clients whose machine tokens carry an email;
//   - RS256 JWT access tokens for one audience (the registry's), with `email`, `email_verified` and MedPerf's
//     `https://medperf.org/email` claims;
//   - the built-in login and consent pages (devInteractions): any login name, any password.
// Accounts: the login name is the subject; its email is the name itself when it holds an `@`, else
// `<name>@example.com`. A name starting `unverified-` gets the email of the rest with email_verified false;
// a name starting `brief-` gets refresh tokens that expire after OIDC_BRIEF_REFRESH_TTL seconds.
// The state is in memory: a restart forgets every grant, and the signing key (and its kid) is new each start.
//
// Environment (all optional but OIDC_PORT):
//   OIDC_PORT, OIDC_HOST (127.0.0.1)      where to listen; the issuer is http(s)://HOST:PORT
//   OIDC_TLS_CERT, OIDC_TLS_KEY           PEM files: serve HTTPS
//   OIDC_AUDIENCE                         the registry's audience (https://registry.medperf-apply.test)
//   OIDC_ACCESS_TOKEN_TTL (300)           seconds; MedPerf's access tokens live less than a day
//   OIDC_REFRESH_TOKEN_TTL (2592000)      seconds; MedPerf's refresh tokens: 30 days
//   OIDC_BRIEF_REFRESH_TTL (3)            seconds, for `brief-` accounts
//   OIDC_DEVICE_CLIENT (medperf-apply)    the public client of the device flow
//   OIDC_DEVICE_INTERVAL (5)              the polling interval announced; polling faster gets `slow_down`
//   OIDC_CONFIDENTIAL_CLIENTS             `id:secret:email,...` (medperf-ci:ci-secret:ci-bot@example.com)
//   OIDC_KEY_ID                           the signing key's kid (random by default)
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttps } from 'node:https';
import { createServer as createHttp } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const env = process.env;
const int = (name, fallback) => {
  const value = Number(env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number of seconds`);
  return value;
};
const PORT = int('OIDC_PORT', 0);
if (!PORT) throw new Error('set OIDC_PORT');
const HOST = env.OIDC_HOST || '127.0.0.1';
const TLS = Boolean(env.OIDC_TLS_CERT && env.OIDC_TLS_KEY);
const ISSUER = `${TLS ? 'https' : 'http'}://${HOST}:${PORT}`;
const AUDIENCE = env.OIDC_AUDIENCE || 'https://registry.medperf-apply.test';
const ACCESS_TTL = int('OIDC_ACCESS_TOKEN_TTL', 300);
const REFRESH_TTL = int('OIDC_REFRESH_TOKEN_TTL', 30 * 24 * 3600);
const BRIEF_REFRESH_TTL = int('OIDC_BRIEF_REFRESH_TTL', 3);
const DEVICE_CLIENT = env.OIDC_DEVICE_CLIENT || 'medperf-apply';
const INTERVAL = int('OIDC_DEVICE_INTERVAL', 5);
const CONFIDENTIAL = (env.OIDC_CONFIDENTIAL_CLIENTS ?? 'medperf-ci:ci-secret:ci-bot@example.com')
  .split(',').filter(Boolean).map((entry) => {
    const [id, secret, email] = entry.split(':');
    if (!id || !secret || !email) throw new Error(`OIDC_CONFIDENTIAL_CLIENTS: ${entry} is not id:secret:email`);
    return { id, secret, email };
  });
const MEDPERF_EMAIL = 'https://medperf.org/email';

const identity = (accountId) => {
  const unverified = accountId.startsWith('unverified-');
  const name = unverified ? accountId.slice('unverified-'.length) : accountId;
  return { email: name.includes('@') ? name : `${name}@example.com`, email_verified: !unverified };
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const kid = env.OIDC_KEY_ID || `k-${randomBytes(6).toString('hex')}`;
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };

const provider = new Provider(ISSUER, {
  jwks: { keys: [jwk] },
  clients: [
    { client_id: DEVICE_CLIENT, token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [], redirect_uris: [] },
    // No `scope` in the clients' metadata: resource scopes belong to getResourceServerInfo.
    ...CONFIDENTIAL.map(({ id, secret }) => ({ client_id: id, client_secret: secret,
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [] })),
  ],
  scopes: ['openid', 'offline_access', 'email'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  findAccount: async (ctx, accountId) => ({
    accountId,
    claims: async () => ({ sub: accountId, ...identity(accountId) }),
  }),
  extraTokenClaims: async (ctx, token) => {
    let who;
    if (token.kind === 'AccessToken' && token.accountId) who = identity(token.accountId);
    if (token.kind === 'ClientCredentials') {
      const client = CONFIDENTIAL.find((c) => c.id === token.clientId);
      if (client) who = { email: client.email, email_verified: true };
    }
    return who && { ...who, [MEDPERF_EMAIL]: who.email };
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf || AUDIENCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== AUDIENCE) throw new errors.InvalidTarget(`the only resource here is ${AUDIENCE}`);
        return { scope: 'api:read api:write', audience: AUDIENCE, accessTokenTTL: ACCESS_TTL,
                 accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: ACCESS_TTL,
    ClientCredentials: ACCESS_TTL,
    DeviceCode: 600,
    // A rotated refresh token keeps its grant's absolute expiry, as MedPerf's (30 days from the login).
    RefreshToken: (ctx, token) => ctx?.oidc?.entities.RotatedRefreshToken?.remainingTTL
      ?? (String(token.accountId).startsWith('brief-') ? BRIEF_REFRESH_TTL : REFRESH_TTL),
    Grant: REFRESH_TTL,
    Session: 3600,
    Interaction: 600,
    IdToken: 600,
  },
  cookies: { keys: [randomBytes(16).toString('hex')] },
});

// RFC 8628: announce a polling interval, and answer `slow_down` (adding 5 s) to a client that polls faster.
const polls = new Map(); // device_code -> { at, interval }
provider.on('device_authorization.success', (ctx, body) => {
  body.interval = INTERVAL;
  polls.set(body.device_code, { at: Date.now(), interval: INTERVAL });
});
provider.use(async (ctx, next) => {
  await next();
  const code = ctx.path === '/token' && ctx.status === 400 && ctx.body?.error === 'authorization_pending'
    && ctx.oidc?.params?.device_code;
  if (!code) return;
  const seen = polls.get(code) ?? { at: 0, interval: INTERVAL };
  const now = Date.now();
  if (now - seen.at < seen.interval * 1000 - 100) {
    seen.interval += 5;
    ctx.body = { error: 'slow_down', error_description: `poll at most every ${seen.interval} s` };
  }
  seen.at = now;
  polls.set(code, seen);
});

const server = TLS
  ? createHttps({ cert: readFileSync(env.OIDC_TLS_CERT), key: readFileSync(env.OIDC_TLS_KEY) }, provider.callback())
  : createHttp(provider.callback());
server.listen(PORT, HOST, () => {
  console.log(JSON.stringify({ issuer: ISSUER, audience: AUDIENCE, device_client: DEVICE_CLIENT, kid,
                               access_token_ttl: ACCESS_TTL, pid: process.pid }));
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
