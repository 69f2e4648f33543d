import { SignJWT } from 'jose';

export interface TokenOptions {
  readonly sub: string;
  readonly org?: string | undefined;
  readonly roles?: readonly string[];
  /** Seconds until expiry; negative makes an already-expired token (for tests). @default 3600 */
  readonly ttlSeconds?: number;
  readonly secret: string;
  readonly issuer: string;
  readonly audience: string;
}

/** Mints an HS256 access token the way local development verifies them. Never used in production. */
export async function mintToken(options: TokenOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { roles: [...(options.roles ?? [])] };
  if (options.org !== undefined) claims.org = options.org;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(options.sub)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.ttlSeconds ?? 3600))
    .sign(new TextEncoder().encode(options.secret));
}
