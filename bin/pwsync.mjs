#!/usr/bin/env node
// The `pwsync` command. TypeScript sources run through tsx's loader, so no build step stands
// between `npm install` and a working command.
import { register } from 'tsx/esm/api';

register();
const { quietOnClosedPipe } = await import('../cli/io.ts');
quietOnClosedPipe();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv);
