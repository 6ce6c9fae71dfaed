#!/usr/bin/env node
// The `tollgate` command. In the repository it runs the TypeScript sources through tsx (no build step after
// `npm ci`), with the workspaces resolved to their sources too; an installed package runs its compiled dist/.
import { existsSync } from 'node:fs';
import { register } from 'node:module';
import { URL } from 'node:url';

const source = new URL('../src/main.ts', import.meta.url);
if (existsSync(source)) {
  const { register: registerTsx } = await import('tsx/esm/api');
  registerTsx();
  // registered last, so it runs first: every import also matches the workspaces' "tollgate-source" export condition
  register(
    'data:text/javascript,export function resolve(specifier, context, next) { return next(specifier, { ...context, conditions: [...context.conditions, "tollgate-source"] }); }',
  );
  await import(source.href);
} else {
  await import(new URL('../dist/main.js', import.meta.url).href);
}
