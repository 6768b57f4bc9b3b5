/**
 * A capture source: what hands password changes to the notifier on this DC (the Samba
 * syncpasswords supervisor, the Windows filter DLL's pipe, the `pwsync hook` socket). Its state is
 * reported to every hub, so `pwsync status` can list DCs where capture is missing.
 */
export interface CaptureState {
  source: string;
  state: 'running' | 'restarting' | 'baseline' | 'not-registered' | 'stopped';
  /** Why, in words, when not running. */
  detail: string;
  /** The last change captured (ms since the epoch), 0 when none since start. */
  lastCaptureMs: number;
}

export interface CaptureSource {
  readonly name: string;
  state(): CaptureState;
  stop(): Promise<void>;
}
