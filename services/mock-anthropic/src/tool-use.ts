import { randomId } from './random.js';

/** A `tool_use` block the mock answers with. */
export interface ToolUse {
  id: string;
  name: string;
  input: Record<string, unknown>;
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A value of the schema's type: enough for a client to parse a tool call (its arguments are not meaningful). */
function sampleValue(schema: unknown): unknown {
  if (!isObject(schema)) return 'toll';
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  switch (schema.type) {
    case 'integer':
    case 'number':
      return 1;
    case 'boolean':
      return true;
    case 'array':
      return [];
    case 'object':
      return sampleObject(schema);
    default:
      return 'toll';
  }
}

function sampleObject(schema: Json): Record<string, unknown> {
  const properties = isObject(schema.properties) ? schema.properties : {};
  const required = Array.isArray(schema.required) ? schema.required.filter((name): name is string => typeof name === 'string') : [];
  const input: Record<string, unknown> = {};
  for (const name of required) input[name] = sampleValue(properties[name]);
  return input;
}

/**
 * The tool call the answer makes, when the request forces one: `tool_choice` `{type: "any"}` (the first custom tool) or
 * `{type: "tool", name}`. Its input fills the schema's required properties. With `auto` (or no choice) the mock
 * answers with text [INF].
 */
export function plannedToolUse(body: Readonly<Record<string, unknown>>): ToolUse | undefined {
  const { tools, tool_choice: choice } = body;
  if (!Array.isArray(tools) || !isObject(choice)) return undefined;
  const custom = tools.filter((tool): tool is Json => isObject(tool) && typeof tool.name === 'string' && isObject(tool.input_schema));
  const tool = choice.type === 'any' ? custom[0] : choice.type === 'tool' ? custom.find((t) => t.name === choice.name) : undefined;
  if (tool === undefined) return undefined;
  return { id: randomId('toolu_'), name: String(tool.name), input: sampleObject(tool.input_schema as Json) };
}
