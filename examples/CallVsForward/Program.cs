// The TorchHooks main demo: `dotnet run --project examples/CallVsForward`
//
// In PyTorch, `model(x)` runs the module call path: global and local forward pre-hooks, then
// `forward`, then forward hooks. Calling `model.forward(x)` skips all of it. TorchSharp's `model(x)`
// is `model.call(x)`; TorchHooks (`model.WithHooks()`) gives it PyTorch's full call path.
//
// This program
//   1. trains a small linear regression with an ordinary TorchSharp training loop,
//   2. prints every step of the call path as it happens, for `call` and for `forward`, side by side,
//   3. shows an always_call hook running when forward throws,
//   4. runs the model inside a bfloat16 autocast region.
// The random seed is fixed, so every run prints the same numbers.

using System;
using System.Linq;
using TorchHooks;
using TorchSharp;
using static TorchSharp.torch;

torch.manual_seed(2024);

// ---------------------------------------------------------------------------------------------
// 1. Data and model: y = 2·x1 − 3·x2 + x3 + 0.5, plus a little noise
// ---------------------------------------------------------------------------------------------

using var X = torch.randn(256, 3);
using var trueWeight = torch.tensor(new float[,] { { 2f }, { -3f }, { 1f } });   // [3x1]
using var y = CreateTargets(X, trueWeight);

var model = new Regression();      // a plain TorchSharp module: Linear(3, 1) inside
var m = model.WithHooks();         // its hook-aware facade: same parameters, same state_dict keys

Section("1. Training (the usual loop, predicting with call)");
Console.WriteLine($"model paths: {string.Join(", ", m.Paths.Select(p => p == "" ? "\"\" (the model)" : p))}");
Console.WriteLine($"state_dict:  {string.Join(", ", m.state_dict().Keys)}");
Console.WriteLine($"before:      {model.Describe()}");

var optimizer = torch.optim.SGD(m.parameters(), learningRate: 0.1);
var lossFunction = nn.MSELoss();

m.train();
for (int epoch = 1; epoch <= 60; epoch++)
{
    using var scope = torch.NewDisposeScope();   // frees this epoch's tensors
    optimizer.zero_grad();
    var prediction = m.call(X);                  // PyTorch: model(X)
    var loss = lossFunction.call(prediction, y);
    loss.backward();
    optimizer.step();
    if (epoch == 1 || epoch % 10 == 0)
        Console.WriteLine($"epoch {epoch,3}   loss {loss.item<float>():F6}");
}
m.eval();
Console.WriteLine($"after:       {model.Describe()}");
Console.WriteLine("true rule:   weight = (2.000, -3.000, 1.000), bias = 0.500");

// ---------------------------------------------------------------------------------------------
// 2. The call path, step by step: `call` runs it, `forward` skips it
// ---------------------------------------------------------------------------------------------

Section("2. call versus forward");

// Probe inputs: the unit vectors e1 and e2, so the outputs are about w1 + b = 2.5 and w2 + b = -2.5.
using var probe = torch.tensor(new float[,] { { 1f, 0f, 0f }, { 0f, 1f, 0f } });

// Every hook prints one numbered step and, from ModuleCallInfo.Current, the path of the module call
// it belongs to ("model" is the model itself, whose path is ""). ModuleCallInfo also has CallIndex:
// 0 for a module's first call within one m.call, 1 for its second (a layer used twice), and so on.
var hooks = new HookScope();   // collects the handles; disposing it removes exactly these hooks

// Global hooks run for every module of every wrapped model, before the module's own hooks.
hooks.Add(ModuleHooks.register_module_forward_pre_hook((module, input) =>
{
    Steps.Print($"global forward pre-hook, input {Shape(input)}");
    return null;                                 // null: keep the input
}));
hooks.Add(ModuleHooks.register_module_forward_hook((module, input, output) =>
{
    Steps.Print($"global forward hook, output {Shape(output)}");
    return null;                                 // null: keep the output
}));

// Local hooks on the model (the root) and, by path, on the Linear inside it.
hooks.Add(m.register_forward_pre_hook((module, input) =>
{
    Steps.Print("model pre-hook (registered first)");
    return null;
}));
hooks.Add(m.register_forward_pre_hook((module, input) =>
{
    Steps.Print("model pre-hook (prepend: true)");
    return null;
}, prepend: true));
hooks.Add(m["linear"].register_forward_hook((module, input, output) =>
{
    Steps.Print("linear forward hook");
    return null;
}));
// This one changes the result: predictions are clipped at zero. always_call: it also runs when
// forward throws (then without an output).
hooks.Add(m.register_forward_hook((module, input, output) =>
{
    if (output is null)
    {
        Steps.Print("model forward hook (always_call): forward threw, nothing to clip");
        return null;
    }
    Steps.Print("model forward hook (always_call): clips at 0");
    return output.clamp_min(0f);                 // a tensor: replaces the output
}, always_call: true));

model.Verbose = true;   // Regression.forward prints its own step too
using (torch.no_grad())
using (torch.NewDisposeScope())
{
    Console.WriteLine("m.call(probe)             PyTorch: model(probe)");
    Steps.Reset();
    var viaCall = m.call(probe);
    Console.WriteLine($"    -> {Values(viaCall)}");

    Console.WriteLine();
    Console.WriteLine("model.forward(probe)      PyTorch: model.forward(probe)");
    Steps.Reset();
    var viaForward = model.forward(probe);
    Console.WriteLine($"    -> {Values(viaForward)}");
}
Console.WriteLine();
Console.WriteLine("forward skipped the model's own call path: its pre-hooks, the global hooks for the model and the");
Console.WriteLine("clipping hook. The Linear inside still ran its hooks, because Regression.forward calls it with call.");

// ---------------------------------------------------------------------------------------------
// 3. always_call: a hook that runs even when forward throws
// ---------------------------------------------------------------------------------------------

Section("3. always_call when forward throws");
using (torch.no_grad())
using (torch.NewDisposeScope())
{
    Console.WriteLine("m.call(input with 5 features instead of 3)");
    Steps.Reset();
    try
    {
        m.call(torch.ones(2, 5));
    }
    catch (Exception e)
    {
        Console.WriteLine($"    caught {e.GetType().Name}: {e.Message.Split('\n')[0]}");
    }
}
Console.WriteLine("Only the always_call hook ran after the failure; the original exception came through unchanged.");

model.Verbose = false;
hooks.Dispose();   // removes the six hooks above, and only those

// ---------------------------------------------------------------------------------------------
// 4. Mixed precision: a bfloat16 autocast region (PyTorch: with torch.autocast("cpu", torch.bfloat16))
// ---------------------------------------------------------------------------------------------

Section("4. bfloat16 autocast");
using (torch.no_grad())
using (torch.NewDisposeScope())
using (ModuleHooks.register_module_forward_hook((module, input, output) =>
{
    Console.WriteLine($"    {ModuleCallInfo.Current,-10} {module.GetType().Name,-10} input {input.dtype} -> output {output.dtype}");
    return null;
}))
{
    Console.WriteLine("m.call(probe)");
    var full = m.call(probe);
    Console.WriteLine($"    -> {Values(full)} {full.dtype}");

    Console.WriteLine("m.call(probe) inside Amp.autocast(DeviceType.CPU, ScalarType.BFloat16)");
    Tensor low;
    using (Amp.autocast(DeviceType.CPU, ScalarType.BFloat16))
    {
        low = m.call(probe);
    }
    Console.WriteLine($"    -> {Values(low)} {low.dtype}");
}
Console.WriteLine("Inside the region libtorch ran the Linear in bfloat16 (8 significant bits: 2.494 became 2.500);");
Console.WriteLine("the hooks print ModuleCallInfo.Current as Path#CallIndex.");

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

static Tensor CreateTargets(Tensor x, Tensor weight)
{
    using var scope = torch.NewDisposeScope();
    var targets = x.matmul(weight) + 0.5f + 0.05f * torch.randn(x.shape[0], 1);
    return targets.MoveToOuterDisposeScope();
}

static void Section(string title)
{
    Console.WriteLine();
    Console.WriteLine(title);
    Console.WriteLine(new string('-', title.Length));
}

static string Shape(Tensor t) => "[" + string.Join("x", t.shape) + "]";

static string Values(Tensor t)
{
    using var values = t.detach().to(ScalarType.Float32);
    return "(" + string.Join(", ", values.data<float>().Select(v => v.ToString("F3"))) + ")";
}

/// <summary>y = w·x + b, as a custom module with one registered submodule, "linear".</summary>
sealed class Regression : nn.Module<Tensor, Tensor>
{
    private readonly TorchSharp.Modules.Linear linear;

    /// <summary>When true, forward prints its step of the call path.</summary>
    public bool Verbose { get; set; }

    public Regression() : base(nameof(Regression))
    {
        linear = nn.Linear(3, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        if (Verbose) Steps.Print("Regression.forward: calls linear");
        return linear.call(input);
    }

    public string Describe()
    {
        var w = linear.weight!.data<float>().Select(v => v.ToString("F3"));
        return $"weight = ({string.Join(", ", w)}), bias = {linear.bias!.item<float>():F3}";
    }
}

/// <summary>Numbered steps of the call path, each with the path of the module call it belongs to.</summary>
static class Steps
{
    private static int s_count;

    public static void Reset() => s_count = 0;

    public static void Print(string what)
    {
        var where = ModuleCallInfo.CurrentOrNull is { } call ? (call.Path == "" ? "model" : call.Path) : "(none)";
        Console.WriteLine($"    {++s_count}. {where,-7} {what}");
    }
}
