#!/usr/bin/env node
// The capture script `samba-tool user syncpasswords --script` runs (through the wrapper
// <dataDir>/samba/capture.sh the notifier writes) when the notifier could not bundle it into plain
// JavaScript: the same code through tsx's loader, ~0.3 s slower to start.
import { register } from 'tsx/esm/api';

register();
await import('../notifier/samba/capture-main.ts');
