// The pure parts of single sign-on: which URLs may be used, the callback port and the login
// target, the mapping of a provider's user document, the id of a federated user.

import { describe, expect, it } from 'vitest';
import { isLoopbackHost, judgeUrl } from '../../src/auth/federation/url-policy.ts';
import { TesseraError } from '../../src/domain/errors.ts';
import { federatedUserId, InvalidProfile, profileFromClaims, profileFromUserinfo, readPath } from '../../src/domain/organization.ts';
import { checkCallbackPort, loginErrorTarget, loginTarget, redirectUriOf } from '../../src/flows/sso/steps.ts';

describe('URL policy', () => {
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', 'app.localhost', '[::1]', '::1']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['128.0.0.1', '10.0.0.1', 'localhost.example.com', 'example.com', '[::2]', '0.0.0.0']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('HTTPS always; plain HTTP only on loopback and only with the development setting', () => {
    expect(judgeUrl('https://idp.example.com', 'x', false)).toMatchObject({ ok: true, insecure: false });
    expect(judgeUrl('http://127.0.0.1:9000', 'x', true)).toMatchObject({ ok: true, insecure: true });
    const off = judgeUrl('http://127.0.0.1:9000', 'the issuer', false);
    expect(off.ok).toBe(false);
    expect(!off.ok && off.reason).toContain('TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1');
    expect(judgeUrl('http://idp.example.com', 'x', true).ok).toBe(false);
    expect(judgeUrl('http://192.168.1.10', 'x', true).ok).toBe(false);
    expect(judgeUrl('ftp://127.0.0.1', 'x', true).ok).toBe(false);
    expect(judgeUrl('not a url', 'x', true).ok).toBe(false);
    expect(judgeUrl('https://user:pw@idp.example.com', 'x', true).ok).toBe(false);
    expect(judgeUrl('https://idp.example.com/#frag', 'x', true).ok).toBe(false);
    // A userinfo-looking trick does not make a host loopback.
    expect(judgeUrl('http://127.0.0.1.evil.example', 'x', true).ok).toBe(false);
  });
});

describe('callback port and login target', () => {
  it('accepts integers 1024–65535 and nothing else', () => {
    expect(checkCallbackPort(undefined)).toBeNull();
    expect(checkCallbackPort('')).toBeNull();
    expect(checkCallbackPort('1024')).toBe(1024);
    expect(checkCallbackPort('65535')).toBe(65535);
    for (const bad of ['1023', '65536', '0', '-1', '80', '8080.0', '1e4', ' 8080', '0x1f90', 'abc', '123456']) {
      expect(() => checkCallbackPort(bad), bad).toThrow(TesseraError);
    }
  });

  it('sends a command-line login to 127.0.0.1 only, and a browser login to /login/sso', () => {
    expect(loginTarget({ callbackPort: 4711, cliState: 'st_-1' }, 'a+b/c')).toBe('http://127.0.0.1:4711/callback?token=a%2Bb%2Fc&state=st_-1');
    expect(loginTarget(null, 'tok')).toBe('/login/sso?token=tok');
    const err = new URL(loginErrorTarget({ callbackPort: 4711, cliState: 'st_-1' }, 'sso_access_denied', 'no'.repeat(500)));
    expect(err.host).toBe('127.0.0.1:4711');
    expect(err.searchParams.get('error')).toBe('sso_access_denied');
    expect(err.searchParams.get('state')).toBe('st_-1');
    expect(err.searchParams.get('error_description')?.length).toBe(300);
  });

  it('names the redirect URIs to register at the provider', () => {
    expect(redirectUriOf('https://auth.example.com', 'oidc', null)).toBe('https://auth.example.com/api/v1/sso/oidc/callback');
    expect(redirectUriOf('https://auth.example.com', 'oauth', 'github')).toBe('https://auth.example.com/api/v1/sso/oauth/github/callback');
  });
});

describe('profiles from providers', () => {
  it('maps a plain OAuth 2.0 user document (numeric ids, nested paths, verified only when true)', () => {
    const doc = { id: 42, profile: { mail: 'Ada@Example.COM', verified: 'yes' } };
    expect(profileFromUserinfo('https://gh', { subject: 'id', email: 'profile.mail', emailVerified: 'profile.verified' }, doc)).toStrictEqual({
      issuer: 'https://gh',
      subject: '42',
      email: 'ada@example.com',
      emailVerified: false,
    });
    expect(profileFromUserinfo('https://gh', { subject: 'id', email: null, emailVerified: null }, { id: 'x', email: 'a@b' })).toMatchObject({ email: null });
    expect(() => profileFromUserinfo('https://gh', { subject: 'login', email: 'email', emailVerified: null }, { id: 1 })).toThrow(InvalidProfile);
    expect(() => profileFromUserinfo('https://gh', { subject: 'id', email: 'email', emailVerified: null }, { id: 1.5 })).toThrow(InvalidProfile);
  });

  it('reads own properties only', () => {
    expect(readPath({ a: { b: 1 } }, 'a.b')).toBe(1);
    expect(readPath({}, 'constructor')).toBeUndefined();
    expect(readPath({}, '__proto__')).toBeUndefined();
    expect(readPath('str', 'length')).toBeUndefined();
  });

  it('takes OIDC claims as they are, and refuses a missing subject', () => {
    expect(profileFromClaims('https://idp', { sub: 'alice', email: 'alice@example.com', email_verified: true })).toStrictEqual({
      issuer: 'https://idp',
      subject: 'alice',
      email: 'alice@example.com',
      emailVerified: true,
      sessionId: null,
    });
    // The provider's session id (for its back-channel logouts) is kept when it sends one.
    expect(profileFromClaims('https://idp', { sub: 'alice', sid: 'op-session-1' }).sessionId).toBe('op-session-1');
    expect(profileFromClaims('https://idp', { sub: 'a', email: 'not an email', email_verified: 'true' })).toMatchObject({ email: null, emailVerified: false });
    expect(() => profileFromClaims('https://idp', { email: 'x@y' })).toThrow(InvalidProfile);
  });

  it('derives one user id per (tenant, issuer, subject)', () => {
    const a = federatedUserId('t', 'https://idp', 'alice');
    expect(federatedUserId('t', 'https://idp', 'alice')).toBe(a);
    expect(federatedUserId('t2', 'https://idp', 'alice')).not.toBe(a);
    expect(federatedUserId('t', 'https://idp2', 'alice')).not.toBe(a);
    expect(federatedUserId('t', 'https://idp', 'alice2')).not.toBe(a);
    expect(a).toMatch(/^sso-[A-Za-z0-9_-]{32}$/);
  });
});

describe('TESSERA_DEV_ALLOW_HTTP_LOOPBACK', () => {
  it('is off by default, 1/true/0/false otherwise, and names itself when wrong', async () => {
    const { ConfigError, loadConfig } = await import('../../src/config/config.ts');
    expect(loadConfig({}).devAllowHttpLoopback).toBe(false);
    expect(loadConfig({ TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' }).devAllowHttpLoopback).toBe(true);
    expect(loadConfig({ TESSERA_DEV_ALLOW_HTTP_LOOPBACK: 'false' }).devAllowHttpLoopback).toBe(false);
    expect(() => loadConfig({ TESSERA_DEV_ALLOW_HTTP_LOOPBACK: 'yes' })).toThrow(ConfigError);
    expect(() => loadConfig({ TESSERA_DEV_ALLOW_HTTP_LOOPBACK: 'yes' })).toThrow(/TESSERA_DEV_ALLOW_HTTP_LOOPBACK/);
  });
});
