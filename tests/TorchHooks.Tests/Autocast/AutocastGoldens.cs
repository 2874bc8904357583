using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TorchHooks.Tests.Autocast
{
    /// <summary>Goldens/autocast/autocast_dtypes.json (made by make_goldens.py with PyTorch 1.13.1) and the ops it names.</summary>
    internal static class AutocastGoldens
    {
        public sealed record Case(string Op, string Inputs, string Autocast, string Disabled);

        private static JsonDocument? s_doc;

        /// <summary>The message of the last libtorch error <see cref="DtypeOf"/> turned into "error".</summary>
        [ThreadStatic] public static string? LastError;

        public static JsonElement Root
        {
            get
            {
                s_doc ??= JsonDocument.Parse(File.ReadAllText(
                    Path.Combine(AppContext.BaseDirectory, "Goldens", "autocast", "autocast_dtypes.json")));
                return s_doc.RootElement;
            }
        }

        public static IReadOnlyList<Case> Cases =>
            Root.GetProperty("cases").EnumerateArray().Select(c => new Case(
                c.GetProperty("op").GetString()!, c.GetProperty("inputs").GetString()!,
                c.GetProperty("autocast").GetString()!, c.GetProperty("disabled").GetString()!)).ToList();

        /// <summary>The same deterministic inputs as make_goldens.py's t(kind, *shape).</summary>
        public static Tensor T(string kind, params long[] shape)
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            using var ramp = arange(n, dtype: float64);
            using var scaled = ramp * 0.37 + 0.1;
            using var s = scaled.sin();
            var b = s.reshape(shape);
            switch (kind)
            {
                case "f64": return b;
                case "f32": using (b) return b.to_type(float32);
                case "bf16": using (b) return b.to_type(bfloat16);
                case "i64": using (b) using (var ten = b * 10) return ten.to_type(int64);
                default: throw new ArgumentException($"unknown input kind {kind}", nameof(kind));
            }
        }

        private static Tensor Pos(Tensor x) => x.abs() + 0.5;

        private static Tensor Prob(Tensor x) => x.to_type(float32).sigmoid().to_type(x.dtype);

        /// <summary>Runs the op named <paramref name="op"/> on inputs of <paramref name="kind"/> (intermediates go to the caller's dispose scope).</summary>
        public static Tensor Run(string op, string kind)
        {
            Tensor t(params long[] shape) => T(kind, shape);
            var idx = tensor(new long[] { 0, 2, 1, 0 });
            switch (op)
            {
                case "linear": return F.linear(t(4, 3), t(5, 3), t(5));
                case "matmul": return matmul(t(4, 3), t(3, 5));
                case "mm": return mm(t(4, 3), t(3, 5));
                case "bmm": return bmm(t(2, 4, 3), t(2, 3, 5));
                case "addmm": return addmm(t(4, 5), t(4, 3), t(3, 5), 1, 1);
                case "addbmm": return addbmm(t(4, 5), t(2, 4, 3), t(2, 3, 5));
                // TorchSharp 0.107's Tensor.baddbmm(batch1, batch2) passes its arguments to the native
                // THSTensor_baddbmm(batch1, batch2, mat) in the wrong order: x.baddbmm(a, b) computes
                // b.baddbmm(x, a). So input.baddbmm(b1, b2) is written b1.baddbmm(b2, input).
                case "baddbmm": return t(2, 4, 3).baddbmm(t(2, 3, 5), t(2, 4, 5));
                case "conv1d": return F.conv1d(t(1, 2, 8), t(3, 2, 3), t(3));
                case "conv2d": return F.conv2d(t(1, 2, 6, 6), t(3, 2, 3, 3), t(3));
                case "conv3d": return F.conv3d(t(1, 2, 4, 4, 4), t(3, 2, 2, 2, 2));
                case "conv_transpose1d": return F.conv_transpose1d(t(1, 2, 8), t(2, 3, 3));
                case "conv_transpose2d": return F.conv_transpose2d(t(1, 2, 5, 5), t(2, 3, 3, 3));
                case "prelu": return F.prelu(t(2, 3, 4), t(3));
                case "mse_loss": return F.mse_loss(t(4, 3), t(4, 3) * 0.5);
                case "l1_loss": return F.l1_loss(t(4, 3), t(4, 3) * 0.5);
                case "smooth_l1_loss": return F.smooth_l1_loss(t(4, 3), t(4, 3) * 0.5);
                case "huber_loss": return F.huber_loss(t(4, 3), t(4, 3) * 0.5);
                case "binary_cross_entropy_with_logits": return F.binary_cross_entropy_with_logits(t(4, 3), Prob(t(4, 3)));
                case "binary_cross_entropy": return F.binary_cross_entropy(Prob(t(4, 3)), Prob(t(4, 3) * 0.5));
                case "nll_loss": return F.nll_loss(F.log_softmax(t(4, 3).to_type(float32), 1).to_type(t(1).dtype), idx);
                case "cross_entropy": return F.cross_entropy(t(4, 3), idx);
                case "kl_div": return F.kl_div(t(4, 3), Prob(t(4, 3)), log_target: false, reduction: nn.Reduction.Sum);
                case "soft_margin_loss": return F.soft_margin_loss(t(4, 3), t(4, 3).sign());
                case "margin_ranking_loss": return F.margin_ranking_loss(t(4), t(4) * 0.5, t(4).sign());
                case "poisson_nll_loss": return F.poisson_nll_loss(t(4, 3), Pos(t(4, 3)));
                case "prod": return prod(t(4, 3));
                case "cdist": return cdist(t(4, 3), t(5, 3));
                case "trace": return trace(t(4, 4));
                case "avg_pool3d": return F.avg_pool3d(t(1, 2, 4, 4, 4), new long[] { 2, 2, 2 });
                case "max_pool3d": return F.max_pool3d(t(1, 2, 4, 4, 4), new long[] { 2, 2, 2 });
                case "adaptive_avg_pool3d": return F.adaptive_avg_pool3d(t(1, 2, 4, 4, 4), new long[] { 2, 2, 2 });
                case "reflection_pad1d": return F.pad(t(1, 2, 6), new long[] { 2, 2 }, PaddingModes.Reflect);
                case "replication_pad2d": return F.pad(t(1, 2, 4, 4), new long[] { 1, 1, 1, 1 }, PaddingModes.Replicate);
                case "softmax": return softmax(t(4, 3), 1);
                case "log_softmax": return F.log_softmax(t(4, 3), 1);
                case "layer_norm": return F.layer_norm(t(4, 3), new long[] { 3 });
                case "group_norm": return F.group_norm(t(2, 4, 3), 2);
                case "exp": return exp(t(4, 3));
                case "log": return log(Pos(t(4, 3)));
                case "pow": return pow(Pos(t(4, 3)), 2.5);
                case "sum": return sum(t(4, 3));
                case "mean": return mean(t(4, 3));
                case "cumsum": return cumsum(t(4, 3), 1);
                case "relu": return t(4, 3).relu();
                case "gelu": return F.gelu(t(4, 3));
                case "sigmoid": return sigmoid(t(4, 3));
                case "tanh": return tanh(t(4, 3));
                case "add": return t(4, 3) + t(4, 3);
                case "mul": return t(4, 3) * t(4, 3);
                case "softmax_f32": return softmax(t(4, 3), 1);
                case "sum_f32": return sum(t(4, 3));
                case "cat_mixed": return cat(new[] { T("bf16", 2, 3), T("f32", 2, 3) });
                case "stack_mixed": return stack(new[] { T("bf16", 2, 3), T("f32", 2, 3) });
                case "index_copy_mixed": return index_copy(T("bf16", 4, 3), 0, tensor(new long[] { 0, 2 }), T("f32", 2, 3));
                case "add_mixed": return T("bf16", 4, 3) + T("f32", 4, 3);
                case "linear_f64": return F.linear(t(4, 3), t(5, 3));
                case "matmul_i64": return matmul(t(4, 3), t(3, 5));
                default: throw new ArgumentException($"no C# version of golden op '{op}'", nameof(op));
            }
        }

        /// <summary>PyTorch's dtype name for a TorchSharp scalar type.</summary>
        public static string Name(ScalarType t) => t switch
        {
            ScalarType.Float32 => "float32",
            ScalarType.Float64 => "float64",
            ScalarType.Float16 => "float16",
            ScalarType.BFloat16 => "bfloat16",
            ScalarType.Int64 => "int64",
            ScalarType.Int32 => "int32",
            ScalarType.Bool => "bool",
            _ => t.ToString(),
        };

        /// <summary>The output dtype of <paramref name="op"/>, under CPU/bf16 autocast or disabled; "error" if libtorch refused.</summary>
        public static string DtypeOf(string op, string kind, bool enabled)
        {
            LastError = null;
            using var d = NewDisposeScope();
            using var scope = TorchHooks.Amp.autocast(DeviceType.CPU, ScalarType.BFloat16, enabled: enabled);
            try
            {
                return Name(Run(op, kind == "mixed" ? "f32" : kind).dtype);
            }
            catch (System.Runtime.InteropServices.ExternalException e)
            {
                LastError = e.Message;
                return "error";
            }
        }
    }
}
