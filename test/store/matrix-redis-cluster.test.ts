// The conformance matrix on one target (test/store/targets.ts): every suite on 'redis-cluster'.

import { describeMatrix } from './targets.ts';

await describeMatrix('redis-cluster');
