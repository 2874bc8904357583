using System.Threading.Tasks;
using NUnit.Framework;
using TorchHooks.Analyzers;
using TorchHooks.CodeFixes;
using static TorchHooks.Tests.Analyzers.AnalyzerTestSupport;

namespace TorchHooks.Tests.Analyzers
{
    /// <summary>TH0001 (forward() on another module) and its code fix, against the real TorchSharp 0.107 API.</summary>
    [TestFixture]
    public class ForwardBypassAnalyzerTests
    {
        private const string Usings = @"
using System;
using TorchSharp;
using TorchHooks;
using static TorchSharp.torch;
using TorchSharp.Modules;
";

        // A custom module with a child, as users write them (TorchSharp issues #1203, #1059).
        private const string Net = @"
class Net : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc = nn.Linear(4, 4);
    public Net() : base(nameof(Net)) { RegisterComponents(); }
    public override Tensor forward(Tensor x) => fc.call(x);
    public Tensor encode(Tensor x) => fc.call(x);
    public Tensor forward(Tensor x, int times) => x * times;   // an overload, not the module's forward
}
";

        private static Task Verify(string body) => AnalyzerTest<ForwardBypassAnalyzer>(Usings + Net + body).RunAsync();

        [Test]
        public Task ChildForwardInsideForwardIsFlagged() => Verify(@"
class Outer : nn.Module<Tensor, Tensor>
{
    private readonly Linear child = nn.Linear(4, 4);
    public Outer() : base(nameof(Outer)) { RegisterComponents(); }
    public override Tensor forward(Tensor x) => {|TH0001:child.forward(x)|};
}");

        [Test]
        public Task ForwardOnAModelFromOutsideIsFlagged() => Verify(@"
static class Program
{
    static Tensor Run(Net model, nn.Module<Tensor, Tensor> any, Tensor x)
    {
        var a = {|TH0001:model.forward(x)|};
        return {|TH0001:any.forward(a)|};
    }
}");

        [Test]
        public Task EveryArityIsFlagged() => Verify(@"
class Two : nn.Module<Tensor, Tensor, Tensor>
{
    public Two() : base(nameof(Two)) { }
    public override Tensor forward(Tensor a, Tensor b) => a + b;
}
class Three : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    public Three() : base(nameof(Three)) { }
    public override Tensor forward(Tensor a, Tensor b, Tensor c) => a + b + c;
}
static class Program
{
    static Tensor Run(Two two, Three three, nn.Module<Tensor, Tensor, Tensor> abstractTwo, Tensor x)
        => {|TH0001:two.forward(x, x)|} + {|TH0001:three.forward(x, x, x)|} + {|TH0001:abstractTwo.forward(x, x)|};
}");

        [Test]
        public Task ConditionalAccessAndMethodGroupAreFlagged() => Verify(@"
static class Program
{
    static Tensor? Run(Net? model, Tensor x)
    {
        Func<Tensor, Tensor> f = {|TH0001:model!.forward|};
        return {|TH0001:model?.forward(x)|};
    }
}");

        [Test]
        public Task MessageNamesTheReceiver()
        {
            var test = AnalyzerTest<ForwardBypassAnalyzer>(Usings + Net + @"
static class Program { static Tensor Run(Net model, Tensor x) => {|#0:model.forward(x)|}; }");
            test.ExpectedDiagnostics.Add(new Microsoft.CodeAnalysis.Testing.DiagnosticResult(Diagnostics.ForwardBypass)
                .WithLocation(0).WithArguments("model"));
            return test.RunAsync();
        }

        [Test]
        public Task BaseThisAndImplicitThisAreNotFlagged() => Verify(@"
class Deeper : Net
{
    public override Tensor forward(Tensor x) => base.forward(x) + 1;
    public Tensor twice(Tensor x) => this.forward(forward(x));
}");

        [Test]
        public Task CallHelpersOverloadsAndFacadesAreNotFlagged() => Verify(@"
static class Program
{
    static Tensor Run(Net model, Tensor x)
    {
        var a = model.call(x);                  // the call path
        var b = model.encode(a);                // the module's own helper
        var c = model.forward(b, 2);            // an overload named forward, not the module's forward
        var hooked = model.WithHooks();
        return hooked.forward(c);               // a TorchHooks facade's forward runs the full call path
    }
}");

        [Test]
        public Task ForwardOnSomethingThatIsNotAModuleIsNotFlagged() => Verify(@"
class Pipe { public Tensor forward(Tensor x) => x; }
static class Program { static Tensor Run(Pipe p, Tensor x) => p.forward(x); }");

        [Test]
        public Task FixRewritesForwardToCallKeepingTrivia() =>
            CodeFixTest<ForwardBypassAnalyzer, ForwardToCallCodeFix>(Usings + Net + @"
static class Program
{
    static Tensor Run(Net model, Tensor x)
    {
        var y = {|TH0001:model /* the model */ . forward ( x )|};   // trailing comment
        return {|TH0001:model?.forward(y)|}!;
    }
}", Usings + Net + @"
static class Program
{
    static Tensor Run(Net model, Tensor x)
    {
        var y = model /* the model */ . call ( x );   // trailing comment
        return model?.call(y)!;
    }
}").RunAsync();

        [Test]
        public Task FixRewritesMethodGroupAndDropsInOrderArgumentNames() =>
            CodeFixTest<ForwardBypassAnalyzer, ForwardToCallCodeFix>(Usings + Net + @"
class Two : nn.Module<Tensor, Tensor, Tensor>
{
    public Two() : base(nameof(Two)) { }
    public override Tensor forward(Tensor left, Tensor right) => left + right;
}
static class Program
{
    static Tensor Run(Net model, Two two, Tensor x)
    {
        Func<Tensor, Tensor> f = {|TH0001:model.forward|};
        return {|TH0001:two.forward(left: f(x), right: x)|};
    }
}", Usings + Net + @"
class Two : nn.Module<Tensor, Tensor, Tensor>
{
    public Two() : base(nameof(Two)) { }
    public override Tensor forward(Tensor left, Tensor right) => left + right;
}
static class Program
{
    static Tensor Run(Net model, Two two, Tensor x)
    {
        Func<Tensor, Tensor> f = model.call;
        return two.call(f(x), x);
    }
}").RunAsync();

        [Test]
        public Task NoFixWhenNamedArgumentsAreOutOfOrder()
        {
            const string source = Usings + Net + @"
class Two : nn.Module<Tensor, Tensor, Tensor>
{
    public Two() : base(nameof(Two)) { }
    public override Tensor forward(Tensor left, Tensor right) => left - right;
}
static class Program
{
    static Tensor Run(Two two, Tensor x, Tensor y) => {|TH0001:two.forward(right: y, left: x)|};
}";
            return CodeFixTest<ForwardBypassAnalyzer, ForwardToCallCodeFix>(source, source).RunAsync();
        }
    }
}
