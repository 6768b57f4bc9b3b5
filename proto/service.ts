import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/pwsync.ts';

export const PROTO_PATH = fileURLToPath(new URL('./pwsync.proto', import.meta.url));

/** The options `npm run gen:proto` generates with: the runtime objects then match the types. */
export const LOADER_OPTIONS: protoLoader.Options = { longs: Number, enums: String, defaults: true, oneofs: true };

let loaded: ProtoGrpcType | undefined;

/** The pwsync.v1 package: service constructors and definitions, typed by the generated code. */
export function pwsyncV1(): ProtoGrpcType['pwsync']['v1'] {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return loaded.pwsync.v1;
}
