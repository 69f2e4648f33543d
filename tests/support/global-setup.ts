import type { TestProject } from 'vitest/node';
import { type RunningAzurite, startAzurite } from '../../src/local/azurite.js';

declare module 'vitest' {
  export interface ProvidedContext {
    azuriteConnection: string;
  }
}

let azurite: RunningAzurite | undefined;

/** One in-memory Azurite on free ports for the whole run; each test file isolates itself by table prefix. */
export async function setup(project: TestProject): Promise<void> {
  azurite = await startAzurite();
  project.provide('azuriteConnection', azurite.connectionString);
}

export async function teardown(): Promise<void> {
  await azurite?.stop();
}
