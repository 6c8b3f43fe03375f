// Runs a rendered amirotate state machine with aws-local-stepfunctions.
//
//   node run.mjs DEFINITION.json INPUT.json [OPTIONS.json]
//   node run.mjs < {"definition": {...}, "input": {...}, "options": {...}}
//
// Task states whose Resource is a Lambda ARN are invoked with the AWS SDK for
// JavaScript, which sends them to AWS_ENDPOINT_URL_LAMBDA when it is set (the
// Go lambdahost locally). The EventBridge putEvents task is answered here:
// each entry is printed as a "PutEvents" line instead of leaving the machine.
//
// Every event of the execution is one JSON line on stdout; the last line has
// type "Result" with the execution's status, output or error and cause.
//
// Options (all optional):
//   waitTimeOverrides       {"WaitImages": 200}  milliseconds per Wait state
//   waitMs                  200                  milliseconds for every Wait state not named above
//   retryIntervalOverrides  {"Poll": 10}         milliseconds per state (number or one per retrier)
//   retryMs                 10                   milliseconds for every retrier not named above
//   detailStates            ["BatchReport"]      states whose full input and output are printed
//   region                  "us-east-1"          region of the Lambda client (default AWS_REGION)
//   context                 {"Execution": {...}} the Context Object (its Input and StartTime are the run's own)
//   clockOffsetMs           93600000             the execution's clock (StartTime, event times) runs this far ahead of the wall clock

import { readFileSync } from 'node:fs';

const PUT_EVENTS = 'arn:aws:states:::events:putEvents';
const DEFAULT_DETAIL_STATES = ['BatchReport', 'Report'];

// Step Functions reports a Lambda invocation that failed outside the
// function (throttled, service fault, network) as Lambda.<exception>, the
// names the definition's Retry matches; the SDK throws them bare. Renaming
// them keeps the local Retry and Catch decisions those of AWS.
async function nameLambdaErrorsLikeStepFunctions() {
  const { LambdaClient } = await import('@aws-sdk/client-lambda');
  const send = LambdaClient.prototype.send;
  LambdaClient.prototype.send = async function sendNamed(...args) {
    try {
      return await send.apply(this, args);
    } catch (err) {
      if (err && typeof err === 'object' && !String(err.name).startsWith('Lambda.')) {
        if (err.$fault === undefined) {
          err.name = 'Lambda.SdkClientException';
        } else if (!err.name || err.name === 'Error' || err.name === 'LambdaServiceException') {
          err.name = 'Lambda.AWSLambdaException';
        } else {
          err.name = `Lambda.${err.name}`;
        }
      }
      throw err;
    }
  };
}

function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function size(value) {
  if (value === undefined) return 0;
  return Buffer.byteLength(JSON.stringify(value));
}

function readStdin() {
  return readFileSync(0, 'utf8');
}

function loadArgs(argv) {
  if (argv.length >= 2) {
    return {
      definition: JSON.parse(readFileSync(argv[0], 'utf8')),
      input: JSON.parse(readFileSync(argv[1], 'utf8')),
      options: argv[2] ? JSON.parse(readFileSync(argv[2], 'utf8')) : {},
    };
  }
  if (argv.length === 1) {
    throw new Error('usage: node run.mjs DEFINITION.json INPUT.json [OPTIONS.json], or the three as one JSON object on stdin');
  }
  const doc = JSON.parse(readStdin());
  if (!doc || typeof doc !== 'object' || !doc.definition) {
    throw new Error('stdin must be a JSON object {"definition": {...}, "input": {...}, "options": {...}}');
  }
  return { definition: doc.definition, input: doc.input ?? {}, options: doc.options ?? {} };
}

// states walks every state of a definition, Map iterators included.
function* states(definition) {
  for (const [name, state] of Object.entries(definition.States ?? {})) {
    yield [name, state];
    const inner = state.ItemProcessor ?? state.Iterator;
    if (inner) yield* states(inner);
    for (const branch of state.Branches ?? []) yield* states(branch);
  }
}

function buildOverrides(definition, options) {
  const waitTimeOverrides = { ...(options.waitTimeOverrides ?? {}) };
  const retryIntervalOverrides = { ...(options.retryIntervalOverrides ?? {}) };
  const taskResourceLocalHandlers = {};
  for (const [name, state] of states(definition)) {
    if (state.Type === 'Wait' && options.waitMs !== undefined && waitTimeOverrides[name] === undefined) {
      waitTimeOverrides[name] = options.waitMs;
    }
    if (state.Retry && options.retryMs !== undefined && retryIntervalOverrides[name] === undefined) {
      retryIntervalOverrides[name] = options.retryMs;
    }
    if (state.Type === 'Task' && state.Resource === PUT_EVENTS) {
      taskResourceLocalHandlers[name] = (input) => {
        const entries = Array.isArray(input?.Entries) ? input.Entries : [];
        emit({ type: 'PutEvents', state: name, entries });
        return {
          Entries: entries.map((_, i) => ({ EventId: `local-${Date.now()}-${i}` })),
          FailedEntryCount: 0,
        };
      };
    }
  }
  return { waitTimeOverrides, retryIntervalOverrides, taskResourceLocalHandlers };
}

// progress picks the fields of a Batch that tell how an iteration is doing,
// so a caller can show images pending/available without the whole payload.
function progress(output) {
  if (!output || typeof output !== 'object' || Array.isArray(output)) return undefined;
  const p = {};
  for (const key of ['counts', 'pending', 'toCopy', 'waitSeconds', 'polls']) {
    if (output[key] !== undefined) p[key] = output[key];
  }
  return Object.keys(p).length ? p : undefined;
}

function errorFields(err) {
  const cause = err?.Cause;
  return {
    error: err?.Error ?? err?.name ?? 'Error',
    cause: typeof cause === 'string' ? cause : cause === undefined ? err?.message ?? '' : JSON.stringify(cause),
  };
}

function eventLine(event, detail) {
  const line = { type: event.type, ts: event.timestamp };
  if (event.index !== undefined) line.index = event.index;
  if (event.state) {
    line.state = event.state.name;
    line.stateType = event.state.type;
    line.inputBytes = size(event.state.input);
    if (event.state.output !== undefined) line.outputBytes = size(event.state.output);
    if (detail.has(event.state.name)) {
      line.input = event.state.input;
      if (event.state.output !== undefined) line.output = event.state.output;
    }
    if (event.type === 'StateExited') {
      const p = progress(event.state.output);
      if (p) line.progress = p;
    }
  }
  if (event.parentState) line.state = event.parentState.name;
  if (event.retry) line.attempt = event.retry.attempt;
  if (event.catch) line.next = event.catch.catcher.Next;
  if (event.Error !== undefined) Object.assign(line, errorFields(event));
  if (event.type === 'ExecutionStarted') line.inputBytes = size(event.input);
  if (event.type === 'ExecutionSucceeded') line.outputBytes = size(event.output);
  return line;
}

// shiftClock moves this process's Date forward by offset milliseconds (a
// simulated clock the caller moved ahead). It must run before the package
// is imported.
function shiftClock(offset) {
  const RealDate = Date;
  globalThis.Date = class ShiftedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(RealDate.now() + offset);
      else super(...args);
    }

    static now() {
      return RealDate.now() + offset;
    }
  };
}

async function main() {
  // aws-local-stepfunctions 3 needs Node.js 22 or later (Promise.withResolvers).
  if (!Promise.withResolvers) {
    throw new Error(`Node.js ${process.version} is too old for aws-local-stepfunctions 3: run make setup, which installs Node.js 24 into node_modules`);
  }
  const { definition, input, options } = loadArgs(process.argv.slice(2));
  if (options.clockOffsetMs) shiftClock(options.clockOffsetMs);
  const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!region) throw new Error('set AWS_REGION (or options.region): the Lambda client needs a region');
  if (!process.env.AWS_REGION) process.env.AWS_REGION = region;

  await nameLambdaErrorsLikeStepFunctions();
  const { StateMachine } = await import('aws-local-stepfunctions');
  const machine = new StateMachine(definition, { validationOptions: { checkPaths: true, checkArn: true } });
  const detail = new Set(options.detailStates ?? DEFAULT_DETAIL_STATES);
  const runOptions = { overrides: buildOverrides(definition, options) };
  if (options.context) runOptions.context = { ...options.context, Execution: { Input: input, ...options.context.Execution } };
  const execution = machine.run(input, runOptions);

  const logs = (async () => {
    for await (const event of execution.eventLogs) emit(eventLine(event, detail));
  })();

  let result;
  try {
    const output = await execution.result;
    result = { type: 'Result', status: 'SUCCEEDED', output };
  } catch (err) {
    const name = err?.constructor?.name;
    const status = name === 'ExecutionTimeoutError' ? 'TIMED_OUT' : name === 'ExecutionAbortedError' ? 'ABORTED' : 'FAILED';
    const root = err?.cause ?? err;
    result = { type: 'Result', status, error: root?.name ?? 'Error', cause: root?.message ?? String(err) };
  }
  await logs;
  emit(result);
}

// SIGTERM from the Go side (a cancelled run) ends the process like Ctrl-C.
process.on('SIGTERM', () => process.exit(143));

main().catch((err) => {
  emit({ type: 'Result', status: 'ERROR', error: err?.name ?? 'Error', cause: err?.message ?? String(err) });
  process.exitCode = 2;
});
