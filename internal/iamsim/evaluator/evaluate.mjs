// The IAM evaluator of the local EC2: one long-lived process that the Go
// side (internal/iamsim) asks over stdin/stdout, one JSON object per line.
//
//   {"op":"load","set":"S","roles":{"snapshot":[{"name":"P","policy":{...}}]}}
//     → {"ok":true}
//   {"op":"eval","set":"S","role":"snapshot","principal":"arn:…","account":"123456789012",
//    "requests":[{"action":"ec2:CreateImage","resource":"arn:…","context":{"k":"v"|["v"]}}]}
//     → {"decisions":["Allowed"|"ImplicitlyDenied"|"ExplicitlyDenied", …]}
//   any failure → {"error":"…"}
//
// The first request of each shape (action, resource type, context keys) runs
// through the validating runSimulation, which checks the action, the resource
// ARN against the action's resource types and drops the context keys that do
// not apply to them (as AWS does); the same shape then runs through
// runUnsafeSimulation with those keys dropped, which is 40 times faster.
import { createInterface } from 'node:readline'
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

const sets = new Map() // set → role → identity policies
const shapes = new Map() // shape → ignored context keys

function shapeOf(req) {
  const type = req.resource === '*' ? '*' : req.resource.replace(/\/[^/]*$/, '/…')
  return [req.action, type, ...Object.keys(req.context).sort()].join('\u0000')
}

// KMS authorizes a key only through its key policy; the local world's keys
// have the default one, which lets the account's IAM policies decide.
function keyPolicy(account) {
  return {
    Version: '2012-10-17',
    Statement: [{ Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${account}:root` }, Action: 'kms:*', Resource: '*' }]
  }
}

function simulation(policies, principal, account, req, context) {
  return {
    request: {
      principal,
      action: req.action,
      resource: { resource: req.resource, accountId: account },
      contextVariables: context
    },
    identityPolicies: policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: req.action.startsWith('kms:') ? keyPolicy(account) : undefined
  }
}

async function evaluate(msg) {
  const roles = sets.get(msg.set)
  if (!roles) throw new Error(`unknown policy set ${msg.set}`)
  const policies = roles[msg.role] ?? []
  const decisions = []
  for (const req of msg.requests) {
    const shape = shapeOf(req)
    if (!shapes.has(shape)) {
      // AWS-owned SSM documents (AWS-RunShellScript) have ARNs without an
      // account (arn:aws:ssm:us-east-1::document/AWS-RunShellScript), which
      // the Service Authorization Reference's document pattern does not
      // spell; validate the shape with the account filled in, evaluate the
      // real ARN.
      const validated = /^arn:[^:]+:ssm:[^:]+::document\//.test(req.resource)
        ? { ...req, resource: req.resource.replace('::document/', `:${msg.account}:document/`) }
        : req
      const checked = await runSimulation(simulation(policies, msg.principal, msg.account, validated, req.context), {})
      if (checked.resultType === 'error') {
        throw new Error(`${req.action} on ${req.resource}: ${JSON.stringify(checked.errors)}`)
      }
      const ignored = checked.resultType === 'single' ? checked.result.ignoredContextKeys ?? [] : checked.results[0]?.ignoredContextKeys ?? []
      shapes.set(shape, new Set(ignored))
    }
    const ignored = shapes.get(shape)
    const context = Object.fromEntries(Object.entries(req.context).filter(([k]) => !ignored.has(k)))
    if (req.action.startsWith('kms:')) {
      // runUnsafeSimulation cannot take a resource policy (it loads it
      // without a name); KMS requests are few (encrypted copies).
      const checked = await runSimulation(simulation(policies, msg.principal, msg.account, req, context), {})
      decisions.push(checked.overallResult)
      continue
    }
    decisions.push(runUnsafeSimulation(simulation(policies, msg.principal, msg.account, req, context), {}))
  }
  return { decisions }
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.trim()) continue
  try {
    const msg = JSON.parse(line)
    if (msg.op === 'load') {
      sets.set(msg.set, msg.roles)
      out({ ok: true })
    } else if (msg.op === 'eval') {
      out(await evaluate(msg))
    } else {
      out({ error: `unknown op ${msg.op}` })
    }
  } catch (e) {
    out({ error: String(e?.message ?? e) })
  }
}
