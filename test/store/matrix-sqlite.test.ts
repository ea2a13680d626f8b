// The conformance matrix on one target (test/store/targets.ts): every suite on 'sqlite'.

import { describeMatrix } from './targets.ts';

await describeMatrix('sqlite');
