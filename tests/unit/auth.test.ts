import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAuthenticator } from '../../src/http/auth.js';
import { freePort } from '../../src/local/azurite.js';

const issuer = 'https://login.example.test/';
const audience = 'billing-api';

describe('JWT verification', () => {
  let server: http.Server;
  let jwksUrl: URL;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    // A real JWKS endpoint on loopback: the production path, fetched and cached by jose.
    server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    jwksUrl = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/keys`);
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const sign = (claims: Record<string, unknown>, build?: (jwt: SignJWT) => SignJWT) => {
    let jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject('user_1')
      .setIssuedAt()
      .setExpirationTime('5m');
    if (build) jwt = build(jwt);
    return jwt.sign(privateKey);
  };

  it('accepts a token signed by a key from the JWKS and reads sub, org and roles', async () => {
    const authenticate = createAuthenticator({ kind: 'jwks', jwksUrl, issuer, audience });
    const principal = await authenticate(`Bearer ${await sign({ org: 'org_1', roles: ['service'] })}`);
    expect(principal.userId).toBe('user_1');
    expect(principal.orgId).toBe('org_1');
    expect([...principal.roles]).toEqual(['service']);
  });

  it('remembers a verified token only until it expires', async () => {
    const authenticate = createAuthenticator({ kind: 'jwks', jwksUrl, issuer, audience });
    const token = `Bearer ${await sign({}, (j) => j.setExpirationTime('2m'))}`;
    expect((await authenticate(token)).userId).toBe('user_1');
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 3 * 60_000 });
    try {
      await expect(authenticate(token)).rejects.toMatchObject({ code: 'token_expired' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses a token without an expiry', async () => {
    const authenticate = createAuthenticator({ kind: 'jwks', jwksUrl, issuer, audience });
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject('user_1')
      .sign(privateKey);
    await expect(authenticate(`Bearer ${token}`)).rejects.toMatchObject({ code: 'token_invalid' });
  });

  it('refuses a wrong issuer, an unsafe subject and an HS256 token in JWKS mode', async () => {
    const authenticate = createAuthenticator({ kind: 'jwks', jwksUrl, issuer, audience });
    await expect(
      authenticate(`Bearer ${await sign({}, (j) => j.setIssuer('https://evil.test/'))}`),
    ).rejects.toMatchObject({
      code: 'token_invalid',
    });
    await expect(authenticate(`Bearer ${await sign({}, (j) => j.setSubject('a/b'))}`)).rejects.toMatchObject({
      code: 'token_claims_invalid',
    });
    const hs = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject('user_1')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('x'.repeat(32)));
    await expect(authenticate(`Bearer ${hs}`)).rejects.toMatchObject({ code: 'token_invalid' });
  });

  it('answers 503 (unavailable), not 401, when the identity provider cannot be reached', async () => {
    const unreachable = new URL(`http://127.0.0.1:${await freePort()}/keys`);
    const authenticate = createAuthenticator({ kind: 'jwks', jwksUrl: unreachable, issuer, audience });
    await expect(authenticate(`Bearer ${await sign({})}`)).rejects.toMatchObject({
      kind: 'unavailable',
      code: 'identity_provider_unavailable',
    });
  });
});
