import { installMain } from '../../notifier/windows/install-main.ts';

/** The entry bundled by notifier-install.test.ts into one .mjs and run by Windows node.exe under Wine. */
process.exitCode = await installMain(process.argv.slice(2));
