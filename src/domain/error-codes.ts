// The closed catalogue of error codes. Every problem document a client can receive carries one
// of these in `code` (and `type` = https://tessera.dev/problems/<code>). The error classes in
// errors.ts and sendProblem in src/http/problem.ts accept only these, so a new code is added
// here first — and test/unit/error-codes.test.ts fails until docs/api.md's error table lists it.

export const ERROR_CODES = [
  // 400
  'bad_request',
  'bad_url',
  'client_secret_required',
  'insecure_url',
  'invalid_app',
  'invalid_callback_port',
  'invalid_cli_login',
  'invalid_cursor',
  'invalid_header',
  'invalid_id_token_hint',
  'invalid_json',
  'invalid_limit',
  'invalid_logout_token',
  'invalid_org',
  'invalid_payment',
  'invalid_request',
  'invalid_tenant',
  'invalid_tls',
  'missing_header',
  'oidc_interaction_expired',
  'org_required',
  'outbound_url_refused',
  'sso_code_rejected',
  'sso_flow_expired',
  'sso_invalid_callback',
  'sso_provider_error',
  'unknown_bank',
  'wrong_protocol',
  // 401
  'admin_required',
  'anomaly_detected',
  'invalid_client',
  'invalid_credentials',
  'invalid_grant',
  'invalid_sso_token',
  'invalid_token',
  'reauth_required',
  'refresh_token_reused',
  'session_ended',
  'sso_id_token_invalid',
  'unauthenticated',
  // 403
  'consent_required',
  'cookie_session_required',
  'csrf',
  'other_tenant',
  'platform_admin_required',
  'redirect_cookie_missing',
  'redirect_invalid',
  'redirect_other_browser',
  'session_mismatch',
  'sso_access_denied',
  'sso_admin_required',
  'sso_browser_mismatch',
  'sso_state_mismatch',
  'sso_verifier_mismatch',
  'tenant_mismatch',
  'user_disabled',
  // 404
  'app_not_found',
  'bank_not_found',
  'consent_not_found',
  'not_found',
  'org_not_found',
  'session_not_found',
  'tenant_not_found',
  'user_not_found',
  'insecure_issuer',
  // 408
  'request_timeout',
  // 409
  'consent_ended',
  'consent_exists',
  'consent_not_pending',
  'consent_return_url_unset',
  'flow_exists',
  'invalid_parent',
  'org_changed',
  'refresh_token_exists',
  'session_exists',
  'session_limit_reached',
  'sso_email_conflict',
  'sso_user_missing',
  'tenant_not_empty',
  'tenant_reserved',
  'user_exists',
  // 413, 415
  'body_too_large',
  'unsupported_media_type',
  // 429
  'login_throttled',
  'sso_throttled',
  'too_many_redirects',
  'too_many_streams',
  // 414, 431
  'uri_too_long',
  'headers_too_large',
  // 5xx
  'bank_unavailable',
  'client_secret_unreadable',
  'console_not_built',
  'insecure_redirect_uri',
  'internal_error',
  'oidc_discovery_failed',
  'sso_provider_unavailable',
  'shutting_down',
  'store_unavailable',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const KNOWN: ReadonlySet<string> = new Set(ERROR_CODES);

export function isErrorCode(code: string): code is ErrorCode {
  return KNOWN.has(code);
}
