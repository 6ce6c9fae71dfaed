// Copies a package's src/lua/*.lua next to the compiled code (dist/lua), where scripts.ts reads them.
import { cpSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const from = join(process.cwd(), 'src', 'lua');
if (existsSync(from)) cpSync(from, join(process.cwd(), 'dist', 'lua'), { recursive: true });
