import { createRemoteJWKSet, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { forbidden, unauthenticated, unavailable } from '../billing/errors.js';
import { idSchema, type OrgId, type UserId } from '../billing/ids.js';
import type { Config } from '../config.js';

/** Who is calling, from a verified token and nothing else. */
export interface Principal {
  readonly userId: UserId;
  /** The active organization; absent for the personal workspace. */
  readonly orgId: OrgId | undefined;
  readonly roles: ReadonlySet<string>;
}

const claimsSchema = z.object({
  sub: idSchema,
  /** Seconds since the epoch; required (a token without it would never expire). */
  exp: z.number(),
  org: idSchema.optional(),
  roles: z.array(z.string()).optional(),
});

export type Authenticator = (authorization: string | null) => Promise<Principal>;

/** Verified tokens remembered, so a service calling with the same token is not verified on every call. */
const REMEMBERED_TOKENS = 10_000;
/** However long a token is valid, it is verified again after this long. */
const REMEMBER_MS = 5 * 60_000;

/**
 * Bearer JWT verification with `jose`: against the identity provider's JWKS in production, or a shared
 * HS256 secret for local development. Issuer, audience, expiry and algorithm are always checked.
 */
export function createAuthenticator(auth: Config['auth']): Authenticator {
  const key: Uint8Array | JWTVerifyGetKey =
    auth.kind === 'jwks' ? createRemoteJWKSet(auth.jwksUrl) : auth.secret;
  const algorithms = auth.kind === 'jwks' ? ['RS256', 'ES256', 'PS256', 'EdDSA'] : ['HS256'];

  // The platform's services send the same token on every call until it expires; verifying a signature
  // (a key import and an HMAC or RSA operation) is most of what an entitlement check costs the CPU.
  const remembered = new Map<string, { readonly principal: Principal; readonly until: number }>();

  return async (authorization) => {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (!token) {
      throw unauthenticated('token_missing', 'Send "Authorization: Bearer <access token>".');
    }
    const known = remembered.get(token);
    if (known && Date.now() < known.until) return known.principal;
    if (known) remembered.delete(token); // expired: verified again below, which says so
    let payload: unknown;
    try {
      // jwtVerify's key argument is overloaded; the two branches keep the types exact.
      // A token without `exp` would never expire: it is required, not merely checked when present.
      const options = {
        issuer: auth.issuer,
        audience: auth.audience,
        algorithms,
        requiredClaims: ['exp', 'sub'],
      };
      const verified =
        typeof key === 'function'
          ? await jwtVerify(token, key, options)
          : await jwtVerify(token, key, options);
      payload = verified.payload;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) {
        throw unauthenticated('token_expired', 'The access token has expired.');
      }
      // The identity provider's keys could not be fetched: our outage, not a bad token, so clients should
      // retry rather than sign the user out.
      if (
        auth.kind === 'jwks' &&
        (error instanceof joseErrors.JWKSTimeout || !(error instanceof joseErrors.JOSEError))
      ) {
        throw unavailable(
          'identity_provider_unavailable',
          'Token signing keys could not be fetched; retry shortly.',
          5,
        );
      }
      if (error instanceof joseErrors.JOSEError) {
        throw unauthenticated('token_invalid', `The access token was rejected: ${error.code}.`);
      }
      throw error;
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) {
      throw unauthenticated(
        'token_claims_invalid',
        `The access token's claims are invalid: ${z.prettifyError(claims.error)}`,
      );
    }
    const principal = {
      userId: claims.data.sub,
      orgId: claims.data.org,
      roles: new Set(claims.data.roles ?? []),
    };
    remembered.set(token, { principal, until: Math.min(claims.data.exp * 1000, Date.now() + REMEMBER_MS) });
    if (remembered.size > REMEMBERED_TOKENS) {
      const oldest = remembered.keys().next();
      if (!oldest.done) remembered.delete(oldest.value);
    }
    return principal;
  };
}

export function requireRole(principal: Principal, role: 'service' | 'admin'): void {
  if (!principal.roles.has(role)) {
    throw forbidden(`${role}_role_required`, `This endpoint needs a token with the "${role}" role.`);
  }
}
