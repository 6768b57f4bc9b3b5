import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/pwsync.ts';
import { Utf8Checker, type MessageDescriptor } from './strict-utf8.ts';

export const PROTO_PATH = fileURLToPath(new URL('./pwsync.proto', import.meta.url));

/** The options `npm run gen:proto` generates with: the runtime objects then match the types. */
export const LOADER_OPTIONS: protoLoader.Options = { longs: Number, enums: String, defaults: true, oneofs: true };

export const PACKAGE = 'pwsync.v1';

/** Notices one Report may carry (ReportRequest.notices in pwsync.proto): a hub refuses more, a notifier sends no more. */
export const MAX_REPORT_NOTICES = 1000;

let definition: protoLoader.PackageDefinition | undefined;
let loaded: ProtoGrpcType | undefined;
let checker: Utf8Checker | undefined;

const packageDefinition = (): protoLoader.PackageDefinition => (definition ??= protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS));

/** The pwsync.v1 package: service constructors and definitions, typed by the generated code. */
export function pwsyncV1(): ProtoGrpcType['pwsync']['v1'] {
  loaded ??= grpc.loadPackageDefinition(packageDefinition()) as unknown as ProtoGrpcType;
  return loaded.pwsync.v1;
}

/** Names the string fields of an encoded pwsync.v1 message that are not valid UTF-8. */
export function utf8Checker(): Utf8Checker {
  if (!checker) {
    const types = new Map<string, MessageDescriptor>();
    for (const [name, def] of Object.entries(packageDefinition())) {
      if ('format' in def && def.format === 'Protocol Buffer 3 DescriptorProto') types.set(name, def.type as MessageDescriptor);
    }
    checker = new Utf8Checker(types, PACKAGE);
  }
  return checker;
}
