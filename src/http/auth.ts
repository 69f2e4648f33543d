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
  org: idSchema.optional(),
  roles: z.array(z.string()).optional(),
});

export type Authenticator = (authorization: string | null) => Promise<Principal>;

/**
 * Bearer JWT verification with `jose`: against the identity provider's JWKS in production, or a shared
 * HS256 secret for local development. Issuer, audience, expiry and algorithm are always checked.
 */
export function createAuthenticator(auth: Config['auth']): Authenticator {
  const key: Uint8Array | JWTVerifyGetKey =
    auth.kind === 'jwks' ? createRemoteJWKSet(auth.jwksUrl) : auth.secret;
  const algorithms = auth.kind === 'jwks' ? ['RS256', 'ES256', 'PS256', 'EdDSA'] : ['HS256'];

  return async (authorization) => {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (!token) {
      throw unauthenticated('token_missing', 'Send "Authorization: Bearer <access token>".');
    }
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
    return { userId: claims.data.sub, orgId: claims.data.org, roles: new Set(claims.data.roles ?? []) };
  };
}

export function requireRole(principal: Principal, role: 'service' | 'admin'): void {
  if (!principal.roles.has(role)) {
    throw forbidden(`${role}_role_required`, `This endpoint needs a token with the "${role}" role.`);
  }
}
