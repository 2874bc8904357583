using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// One forward pass of a wrapped model, as written to a snapshot file: the calls in call order (pre-order:
    /// a module before the modules it calls), each with its path, call index, depth, type, own parameters,
    /// inputs, outputs and their numeric fingerprints. Properties are written in declaration order.
    /// </summary>
    internal sealed class ModelSnapshot
    {
        /// <summary>The file format; a file with another one is re-recorded, not compared.</summary>
        public const string CurrentFormat = "torchhooks-snapshot/1";

        public string Format { get; set; } = CurrentFormat;
        public string Name { get; set; } = "";
        /// <summary>The type of the outermost module called.</summary>
        public string Model { get; set; } = "";
        /// <summary>train() or eval() mode of that module.</summary>
        public bool Training { get; set; }
        /// <summary>The autocast state when the pass began: "off", or e.g. "cpu bfloat16".</summary>
        public string Autocast { get; set; } = "off";
        /// <summary>Elements in all parameters of the outermost module (recursive).</summary>
        public long Parameters { get; set; }
        public List<CallRecord> Calls { get; set; } = new();

        private static readonly JsonSerializerOptions s_options = new()
        {
            WriteIndented = true,
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };

        /// <summary>The file text: indented JSON, "\n" line ends on every OS, a final newline.</summary>
        public string ToJson() => JsonSerializer.Serialize(this, s_options).Replace("\r\n", "\n") + "\n";

        public static ModelSnapshot FromJson(string json)
            => JsonSerializer.Deserialize<ModelSnapshot>(json, s_options) ?? throw new InvalidDataException("the file holds JSON null");
    }

    /// <summary>One module call.</summary>
    internal sealed class CallRecord
    {
        /// <summary>The module's path in the wrapped tree (<c>named_modules()</c> name; "" is the root).</summary>
        public string Path { get; set; } = "";
        /// <summary>0 for the module's first call in this pass, 1 for the second (a shared module), ...</summary>
        public int Call { get; set; }
        /// <summary>Nesting depth; the outermost call is 0.</summary>
        public int Depth { get; set; }
        public string Type { get; set; } = "";
        /// <summary>Elements in the module's own parameters (not its children's).</summary>
        public long Params { get; set; }
        /// <summary>Their dtype (several joined by ","), absent when the module has none.</summary>
        public string? ParamDtype { get; set; }
        /// <summary>The autocast state at this call, only where it differs from the pass's.</summary>
        public string? Autocast { get; set; }
        /// <summary>Each input: a tensor's dtype and shape, e.g. <c>float32[4, 3]</c>; any other argument as its value (<c>true</c>, <c>null</c>, <c>3</c>).</summary>
        public List<string> Inputs { get; set; } = new();
        /// <summary>Each output tensor with its fingerprint; absent when the module's output type is not recorded.</summary>
        public List<OutputRecord>? Outputs { get; set; }

        /// <summary>The module called (while recording; not written).</summary>
        [JsonIgnore] internal TorchSharp.torch.nn.Module? Module { get; set; }

        /// <summary>The path as shown in messages: <c>&lt;root&gt;</c> for "", <c>#n</c> added for a repeated call.</summary>
        [JsonIgnore] public string Display => TensorText.DisplayPath(Path, Call);
    }

    /// <summary>One output tensor: dtype, shape and a numeric fingerprint.</summary>
    internal sealed class OutputRecord
    {
        /// <summary>dtype and shape, e.g. <c>float32[4, 2]</c>; a non-tensor output as its value (no fingerprint).</summary>
        public string Tensor { get; set; } = "";
        public double? Mean { get; set; }
        /// <summary>Population standard deviation (correction 0), so one element gives 0, not NaN.</summary>
        public double? Std { get; set; }
        public double? Min { get; set; }
        public double? Max { get; set; }
        /// <summary>Values at fixed flat positions (first, quartiles, last), keyed by position.</summary>
        public Dictionary<string, double>? Samples { get; set; }
        /// <summary>SHA-256 of dtype, shape and the raw element bytes: compared in exact mode.</summary>
        public string? Sha256 { get; set; }
    }

    internal static class TensorText
    {
        public static string DisplayPath(string path, int call)
            => (path.Length == 0 ? "<root>" : path) + (call > 0 ? "#" + call : "");

        public static string Number(double v) => v.ToString("G6", System.Globalization.CultureInfo.InvariantCulture).Replace("E", "e");

        public static string Join(IEnumerable<string> items)
        {
            var sb = new StringBuilder();
            foreach (var s in items) { if (sb.Length > 0) sb.Append(", "); sb.Append(s); }
            return sb.ToString();
        }
    }
}
