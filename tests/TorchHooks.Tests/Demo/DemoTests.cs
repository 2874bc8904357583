using System;
using System.IO;
using NUnit.Framework;

namespace TorchHooks.Tests.Demo
{
    /// <summary>Runs the README's main demo (examples/CallVsForward) in-process and checks what it prints.</summary>
    [TestFixture]
    public class DemoTests
    {
        [Test]
        public void MainDemoTrainsAndShowsTheCallPath()
        {
            var entry = System.Reflection.Assembly.Load("CallVsForward").EntryPoint!;
            var original = Console.Out;
            var output = new StringWriter();
            Console.SetOut(output);
            try { entry.Invoke(null, new object[] { Array.Empty<string>() }); }
            finally { Console.SetOut(original); }
            var text = output.ToString();
            TestContext.Out.WriteLine(text);

            Assert.That(text, Does.Contain("epoch  60   loss 0.0027"), "the training loop converges");
            Assert.That(text, Does.Contain("m.call(probe)").And.Contain("model.forward(probe)"));
            Assert.That(text, Does.Contain("model forward hook (always_call): forward threw"));
            Assert.That(text, Does.Contain("output BFloat16"), "the autocast region changes the Linear's dtype");
            Assert.That(ModuleHooks.ForwardPre.Count + ModuleHooks.Forward.Count, Is.Zero, "the demo removes its global hooks");
        }
    }
}
