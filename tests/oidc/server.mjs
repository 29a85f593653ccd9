// A real OAuth 2.0 authorization server (oidc-provider, unmodified from npm) plus a resource
// server that accepts only the JWT access tokens it issues. Used by
// tests/integration/test_oauth2_oidc.py to check authproxy's `oauth2` provider against an
// implementation nobody in this project wrote.
//
//   node server.mjs --issuer-cert C --issuer-key K --api-cert C --api-key K --ca CA
//                   [--issuer-port 0] [--api-port 0]
// (or the env variables OIDC_ISSUER_CERT, OIDC_ISSUER_KEY, OIDC_API_CERT, OIDC_API_KEY, OIDC_CA,
// OIDC_ISSUER_PORT, OIDC_API_PORT). Port 0 picks a free port.
//
// stdout carries one JSON object per line:
//   {"event":"ready","issuer":"https://issuer.test","issuer_port":N,"api_port":N,...}
//   {"event":"token","n":1,"client_id":...,"auth":"basic"|"post"|"none",...,"status":200}
//   {"event":"api","n":1,"status":200|401,"reason":...,"claims":{...}}
// Secrets are logged here on purpose (so the test can compare what arrived byte for byte); this
// log is the server's, never authproxy's.
//
// The issuer is https://issuer.test (authproxy reaches it through connect_to). The resource
// server is https://api.example.com: it reads the issuer's discovery document, fetches its
// jwks_uri over TLS (trusting only the test CA, issuer.test resolved to 127.0.0.1) and checks
// every Bearer token's signature, typ at+jwt, iss, aud and exp with jose.
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const ISSUER = 'https://issuer.test';
const ISSUER_HOST = 'issuer.test';
const API_AUDIENCE = 'https://api.example.com';
const OTHER_AUDIENCE = 'https://other.example.com';

// The clients. The basic client's id and secret both contain characters that RFC 6749 2.3.1
// requires to be form-encoded before they go into the Basic credentials (':' above all: sent raw,
// it would split the id). oidc-provider accepts only VSCHAR (printable ASCII) in them.
const CLIENTS = [
  {
    client_id: 'ap:basic client+1',
    client_secret: 'b4s1c:s3cr%t+/&= ~x',
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'authproxy-post',
    client_secret: 'p0st s3cret&x=y+z%21',
    token_endpoint_auth_method: 'client_secret_post',
  },
].map((c) => ({
  ...c,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
}));

// Resource servers the authorization server knows (RFC 8707 resource indicators). Access tokens
// for them are JWTs (RFC 9068) with aud = the audience below; a client_credentials request without
// `resource` gets an opaque token that no resource server here accepts.
const RESOURCE_SERVERS = {
  [API_AUDIENCE]: { scope: 'api:read api:write', audience: API_AUDIENCE },
  [OTHER_AUDIENCE]: { scope: 'other:read', audience: OTHER_AUDIENCE },
};
const ACCESS_TOKEN_TTL = 600;

function log(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function options() {
  const { values } = parseArgs({
    options: {
      'issuer-port': { type: 'string' },
      'api-port': { type: 'string' },
      'issuer-cert': { type: 'string' },
      'issuer-key': { type: 'string' },
      'api-cert': { type: 'string' },
      'api-key': { type: 'string' },
      ca: { type: 'string' },
    },
  });
  const env = process.env;
  const o = {
    issuerPort: Number(values['issuer-port'] ?? env.OIDC_ISSUER_PORT ?? 0),
    apiPort: Number(values['api-port'] ?? env.OIDC_API_PORT ?? 0),
    issuerCert: values['issuer-cert'] ?? env.OIDC_ISSUER_CERT,
    issuerKey: values['issuer-key'] ?? env.OIDC_ISSUER_KEY,
    apiCert: values['api-cert'] ?? env.OIDC_API_CERT,
    apiKey: values['api-key'] ?? env.OIDC_API_KEY,
    ca: values.ca ?? env.OIDC_CA,
  };
  for (const k of ['issuerCert', 'issuerKey', 'apiCert', 'apiKey', 'ca']) {
    if (!o[k]) {
      process.stderr.write(`server.mjs: missing ${k} (see the usage at the top of the file)\n`);
      process.exit(2);
    }
  }
  return o;
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

// --- authorization server -------------------------------------------------------------------

async function makeProvider() {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await jose.exportJWK(privateKey)), use: 'sig', alg: 'RS256' };
  jwk.kid = await jose.calculateJwkThumbprint(jwk);

  const provider = new Provider(ISSUER, {
    clients: CLIENTS,
    jwks: { keys: [jwk] },
    cookies: { keys: ['authproxy-oidc-test-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // No default: the client must name its resource (authproxy's `resource` setting).
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          const rs = RESOURCE_SERVERS[resourceIndicator];
          if (!rs) throw new errors.InvalidTarget();
          return {
            ...rs,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: { ClientCredentials: ACCESS_TOKEN_TTL },
  });

  // Record every token endpoint request: what arrived and what was answered.
  let n = 0;
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/token') {
      await next();
      return;
    }
    n += 1;
    const entry = { event: 'token', n, method: ctx.method, content_type: ctx.get('content-type') };
    const authz = ctx.get('authorization');
    if (authz) {
      entry.authorization = authz;
      const m = /^basic\s+(\S+)$/i.exec(authz);
      if (m) {
        const raw = Buffer.from(m[1], 'base64').toString('utf8');
        const i = raw.indexOf(':');
        entry.basic_raw_user = i >= 0 ? raw.slice(0, i) : raw;
        entry.basic_raw_pass = i >= 0 ? raw.slice(i + 1) : null;
      }
    }
    try {
      await next();
    } finally {
      entry.form = ctx.oidc?.body ?? null;
      entry.auth = authz ? 'basic' : (entry.form && entry.form.client_secret ? 'post' : 'none');
      entry.client_id = ctx.oidc?.client?.clientId ?? null;
      entry.status = ctx.status;
      const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
      if (body.error) {
        entry.error = body.error;
        entry.error_description = body.error_description;
      }
      if (body.access_token) {
        entry.access_token = body.access_token;
        entry.token_type = body.token_type;
        entry.expires_in = body.expires_in;
        entry.scope = body.scope ?? null;
        entry.jwt = body.access_token.split('.').length === 3;
      }
      log(entry);
    }
  });
  provider.on('server_error', (ctx, err) => log({ event: 'server_error', message: String(err) }));
  return provider;
}

// --- resource server ------------------------------------------------------------------------

function issuerAgent(caPem, issuerPort) {
  // Trust only the test CA, and resolve issuer.test to the local issuer (the port is swapped in
  // the URL): the resource server's own connect_to.
  const lookup = (hostname, opts, cb) => {
    if (hostname.toLowerCase() !== ISSUER_HOST) return dns.lookup(hostname, opts, cb);
    if (opts && opts.all) return cb(null, [{ address: '127.0.0.1', family: 4 }]);
    return cb(null, '127.0.0.1', 4);
  };
  const agent = new https.Agent({ ca: caPem, lookup, keepAlive: false });
  const local = (u) => {
    const url = new URL(u);
    if (url.hostname === ISSUER_HOST) url.port = String(issuerPort);
    return url;
  };
  return { agent, local };
}

function getJSON(url, agent) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent, timeout: 5000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
          return;
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

async function makeResourceServer(tls, caPem, issuerPort) {
  const { agent, local } = issuerAgent(caPem, issuerPort);
  // Discovery, then the advertised jwks_uri: exactly what a real resource server would do.
  const discovery = await getJSON(local(`${ISSUER}/.well-known/openid-configuration`), agent);
  if (discovery.issuer !== ISSUER) throw new Error(`discovery issuer ${discovery.issuer}`);
  const jwks = jose.createRemoteJWKSet(local(discovery.jwks_uri), { agent, timeoutDuration: 5000 });

  let n = 0;
  const server = https.createServer(tls, async (req, res) => {
    n += 1;
    const entry = { event: 'api', n, method: req.method, path: req.url, host: req.headers.host };
    req.resume();
    const send = (status, body, extra = {}) => {
      entry.status = status;
      log(entry);
      res.writeHead(status, { 'content-type': 'application/json', ...extra });
      res.end(JSON.stringify(body));
    };
    const m = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(req.headers.authorization || '');
    if (!m) {
      entry.reason = req.headers.authorization ? 'not a Bearer token' : 'no Authorization';
      send(401, { error: 'invalid_request', reason: entry.reason },
        { 'www-authenticate': 'Bearer realm="api"' });
      return;
    }
    try {
      const { payload, protectedHeader } = await jose.jwtVerify(m[1], jwks, {
        issuer: discovery.issuer,
        audience: API_AUDIENCE,
        typ: 'at+jwt',
        algorithms: ['RS256'],
        requiredClaims: ['exp', 'iat', 'client_id'],
      });
      entry.claims = payload;
      entry.kid = protectedHeader.kid;
      send(200, {
        sub: payload.sub,
        scope: payload.scope ?? null,
        aud: payload.aud,
        iss: payload.iss,
        client_id: payload.client_id,
        exp: payload.exp,
        path: req.url,
        method: req.method,
      });
    } catch (e) {
      entry.reason = `${e.code || e.name}: ${e.message}`;
      try {
        entry.claims = jose.decodeJwt(m[1]);
      } catch {
        entry.claims = null; // opaque token
      }
      send(401, { error: 'invalid_token', reason: entry.reason },
        { 'www-authenticate': 'Bearer realm="api", error="invalid_token"' });
    }
  });
  return server;
}

// --- main -----------------------------------------------------------------------------------

async function main() {
  const o = options();
  const caPem = fs.readFileSync(o.ca);
  const provider = await makeProvider();
  const issuerServer = https.createServer(
    { cert: fs.readFileSync(o.issuerCert), key: fs.readFileSync(o.issuerKey) },
    provider.callback(),
  );
  const issuerPort = await listen(issuerServer, o.issuerPort);
  const apiServer = await makeResourceServer(
    { cert: fs.readFileSync(o.apiCert), key: fs.readFileSync(o.apiKey) }, caPem, issuerPort,
  );
  const apiPort = await listen(apiServer, o.apiPort);
  const stop = () => {
    issuerServer.close();
    apiServer.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const pkg = JSON.parse(fs.readFileSync(
    new URL('./node_modules/oidc-provider/package.json', import.meta.url), 'utf8',
  ));
  log({
    event: 'ready',
    issuer: ISSUER,
    issuer_port: issuerPort,
    api_port: apiPort,
    audience: API_AUDIENCE,
    other_audience: OTHER_AUDIENCE,
    oidc_provider_version: pkg.version,
    node_version: process.version,
    clients: CLIENTS.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      auth_method: c.token_endpoint_auth_method,
    })),
  });
}

main().catch((e) => {
  process.stderr.write(`server.mjs: ${e.stack || e}\n`);
  process.exit(1);
});
