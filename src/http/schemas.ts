// Shared TypeBox schemas: the single source for validation and the OpenAPI document.

import { Type, type TSchema } from 'typebox';
import { TENANT_ID_PATTERN } from '../domain/tenant.ts';

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    requestId: Type.String(),
  },
  { $id: 'Problem', additionalProperties: true, description: 'RFC 9457 problem details' },
);

/** Standard error answers for a route's `response` map. */
export function problems(...statuses: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {};
  for (const s of statuses) out[s] = Type.Ref('Problem');
  return out;
}

export const TenantId = Type.String({ pattern: TENANT_ID_PATTERN, description: 'Tenant id' });

const Seconds = (max: number) => Type.Integer({ minimum: 1, maximum: max });

export const TenantLifetimesSchema = Type.Object(
  {
    token: Seconds(86400),
    appIdle: Seconds(30 * 86400),
    appAbsolute: Seconds(365 * 86400),
    idpIdle: Seconds(30 * 86400),
    idpAbsolute: Seconds(365 * 86400),
    flow: Seconds(3600),
    redirect: Seconds(86400),
    refreshGrace: Type.Integer({ minimum: 0, maximum: 300 }),
  },
  { additionalProperties: false, title: 'TenantLifetimes' },
);

export const SessionLimitSchema = Type.Object(
  {
    max: Type.Union([Type.Integer({ minimum: 1, maximum: 1000 }), Type.Null()]),
    policy: Type.Union([Type.Literal('evict_oldest'), Type.Literal('reject_new')]),
  },
  { additionalProperties: false, title: 'SessionLimit' },
);

export const ProfileSchema = Type.Union([Type.Literal('integration'), Type.Literal('production')]);
export const AnomalyPolicySchema = Type.Union([Type.Literal('record'), Type.Literal('reauth'), Type.Literal('revoke')]);
export const DegradationSchema = Type.Object(
  {
    policy: Type.Union([Type.Literal('fail_closed'), Type.Literal('serve_cached')], {
      description: 'While the store does not answer: fail_closed answers bearer checks 503 store_unavailable; serve_cached serves sessions this process had cached when it lost the store, marked Tessera-Degraded: stale-cache',
    }),
    maxStaleSeconds: Type.Integer({ minimum: 1, maximum: 3600, description: 'serve_cached: for at most this many seconds after the store was lost' }),
  },
  { additionalProperties: false, title: 'Degradation' },
);

export const TenantInputSchema = Type.Object(
  {
    profile: Type.Optional(ProfileSchema),
    lifetimes: Type.Optional(Type.Partial(TenantLifetimesSchema, { additionalProperties: false })),
    sessionLimit: Type.Optional(Type.Partial(SessionLimitSchema, { additionalProperties: false })),
    anomalyPolicy: Type.Optional(AnomalyPolicySchema),
    consentReturnUrl: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 2048 }), Type.Null()])),
    degradation: Type.Optional(Type.Partial(DegradationSchema, { additionalProperties: false })),
  },
  { additionalProperties: false, title: 'TenantInput' },
);

export const TenantSchema = Type.Object({
  id: Type.String(),
  profile: ProfileSchema,
  lifetimes: TenantLifetimesSchema,
  sessionLimit: SessionLimitSchema,
  anomalyPolicy: AnomalyPolicySchema,
  consentReturnUrl: Type.Union([Type.String(), Type.Null()]),
  degradation: DegradationSchema,
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
}, { title: 'Tenant' });

export const UserSchema = Type.Object(
  {
    id: Type.String(),
    tenantId: Type.String(),
    email: Type.String(),
    roles: Type.Array(Type.String()),
    disabled: Type.Boolean(),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { title: 'User' },
);

export const BearerSecurity = [{ bearer: [] }];

/**
 * A page of a cursor-paginated listing: `items`, and `nextCursor` (null on the last page).
 * `title` names it in the OpenAPI document's components.
 */
export function PageOf<T extends TSchema>(item: T, title?: string) {
  return Type.Object(
    { items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) },
    title === undefined ? {} : { title },
  );
}
