// A PerfTest-style load generator on the RabbitMQ Java client, for side-by-side runs of Warren
// and RabbitMQ with a client that writes every publish on its own. See tools/java-perf.sh.
//   throughput: URI [--size B] [--duration S] [--ack-every N] [--prefetch N] [--confirm W]
//               [--producers N] [--consumers N] [--persistent] [--durable] [--fanout Q]
//   churn:      URI --churn THREADS [--duration S]
import com.rabbitmq.client.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;

public class JPerf {
  public static void main(String[] a) throws Exception {
    String uri = a[0];
    int size = 16, dur = 10, ackEvery = 0, prefetch = 0, confirm = 0, producers = 1, consumers = 1, queues = 1;
    boolean persistent = false, durable = false; String xtype = "";
    for (int i = 1; i < a.length; i++) {
      switch (a[i]) {
        case "--size": size = Integer.parseInt(a[++i]); break;
        case "--duration": dur = Integer.parseInt(a[++i]); break;
        case "--ack-every": ackEvery = Integer.parseInt(a[++i]); break;
        case "--prefetch": prefetch = Integer.parseInt(a[++i]); break;
        case "--confirm": confirm = Integer.parseInt(a[++i]); break;
        case "--producers": producers = Integer.parseInt(a[++i]); break;
        case "--consumers": consumers = Integer.parseInt(a[++i]); break;
        case "--persistent": persistent = true; break;
        case "--durable": durable = true; break;
        case "--fanout": queues = Integer.parseInt(a[++i]); xtype = "fanout"; break;
      }
    }
    ConnectionFactory f = new ConnectionFactory(); f.setUri(uri);
    for (int i = 1; i < a.length; i++) if (a[i].equals("--churn")) { churn(f, Integer.parseInt(a[i + 1]), dur); return; }
    String q = "jperf-" + System.nanoTime();
    Connection setup = f.newConnection(); Channel sc = setup.createChannel();
    String ex = "";
    List<String> qs = new ArrayList<>();
    if (xtype.equals("fanout")) { ex = q + "-x"; sc.exchangeDeclare(ex, "fanout", durable, false, null); for (int i = 0; i < queues; i++) { String n = q + "-" + i; sc.queueDeclare(n, durable, false, false, null); sc.queueBind(n, ex, ""); qs.add(n);} consumers = queues; }
    else { sc.queueDeclare(q, durable, false, false, null); qs.add(q); }
    final AtomicLong consumed = new AtomicLong(), published = new AtomicLong();
    final int fAck = ackEvery;
    final long[] lat = new long[1 << 20]; final AtomicInteger latN = new AtomicInteger();
    final long[] sent = new long[65536]; final long[] cl = new long[1 << 20]; final AtomicInteger cN = new AtomicInteger();
    List<Connection> conns = new ArrayList<>();
    for (int c = 0; c < consumers; c++) {
      Connection cc = f.newConnection(); conns.add(cc); Channel ch = cc.createChannel();
      if (prefetch > 0) ch.basicQos(prefetch);
      final int[] cnt = {0};
      ch.basicConsume(qs.get(c % qs.size()), ackEvery == 0, new DefaultConsumer(ch) {
        public void handleDelivery(String tag, Envelope env, AMQP.BasicProperties p, byte[] body) throws java.io.IOException {
          consumed.incrementAndGet();
          if (body.length >= 8 && (consumed.get() & 63) == 0) { long t = java.nio.ByteBuffer.wrap(body).getLong(); int k = latN.getAndIncrement(); if (k < lat.length) lat[k] = System.nanoTime() - t; }
          if (fAck > 0 && ++cnt[0] % fAck == 0) getChannel().basicAck(env.getDeliveryTag(), true);
        }
      });
    }
    final long end = System.nanoTime() + dur * 1_000_000_000L;
    final byte[] body0 = new byte[size];
    final AMQP.BasicProperties props = persistent ? MessageProperties.PERSISTENT_BASIC : new AMQP.BasicProperties();
    List<Thread> ts = new ArrayList<>();
    final String fex = ex, frk = xtype.equals("fanout") ? "" : q; final int fconf = confirm;
    for (int p = 0; p < producers; p++) {
      Connection pc = f.newConnection(); conns.add(pc); Channel ch = pc.createChannel();
      Thread t = new Thread(() -> { try {
        Semaphore sem = null;
        if (fconf > 0) { ch.confirmSelect(); final Semaphore s = new Semaphore(fconf); sem = s;
          ch.addConfirmListener(new ConfirmListener() {
            long last = 0;
            public synchronized void handleAck(long tag, boolean multiple) { int n = multiple ? (int)(tag - last) : 1; if (multiple) last = tag; else if (tag > last && tag == last + 1) last = tag; s.release(n);
              if ((tag & 63) == 0 || multiple) { long t0 = sent[(int)(tag & 65535)]; if (t0 != 0) { int k = cN.getAndIncrement(); if (k < cl.length) cl[k] = System.nanoTime() - t0; } } }
            public synchronized void handleNack(long tag, boolean multiple) { handleAck(tag, multiple); }
          }); }
        while (System.nanoTime() < end) {
          if (sem != null) sem.acquire();
          byte[] b = body0.clone(); if (b.length >= 8) java.nio.ByteBuffer.wrap(b).putLong(System.nanoTime());
          long seq = ch.getNextPublishSeqNo(); sent[(int)(seq & 65535)] = System.nanoTime();
          ch.basicPublish(fex, frk, props, b); published.incrementAndGet();
        }
      } catch (Exception e) { e.printStackTrace(); } });
      ts.add(t);
    }
    long t0 = System.nanoTime(); long c0 = consumed.get();
    for (Thread t : ts) t.start();
    for (Thread t : ts) t.join();
    Thread.sleep(200);
    double secs = (System.nanoTime() - t0) / 1e9;
    long pub = published.get(), con = consumed.get() - c0;
    int n = Math.min(latN.get(), lat.length); long[] l = Arrays.copyOf(lat, n); Arrays.sort(l);
    double p50 = n > 0 ? l[n / 2] / 1e6 : -1, p99 = n > 0 ? l[(int)(n * 0.99)] / 1e6 : -1;
    System.out.printf("published %.0f/s consumed %.0f/s p50 %.1f ms p99 %.1f ms%n", pub / secs, con / secs, p50, p99);
    int m = Math.min(cN.get(), cl.length); if (m > 0) { long[] c2 = Arrays.copyOf(cl, m); Arrays.sort(c2); System.out.printf("confirm latency p50 %.2f ms p90 %.2f ms (n=%d)%n", c2[m/2]/1e6, c2[(int)(m*0.9)]/1e6, m); }
    for (Connection c : conns) try { c.abort(); } catch (Exception e) {}
    for (String n2 : qs) sc.queueDelete(n2); if (!ex.isEmpty()) sc.exchangeDelete(ex);
    setup.close();
    System.exit(0);
  }

  static void churn(ConnectionFactory f, int threads, int secs) throws Exception {
    AtomicLong n = new AtomicLong(); long end = System.nanoTime() + secs * 1_000_000_000L;
    Thread[] ts = new Thread[threads];
    for (int i = 0; i < threads; i++) {
      ts[i] = new Thread(() -> { try { while (System.nanoTime() < end) { Connection c = f.newConnection(); c.createChannel(); c.close(); n.incrementAndGet(); } } catch (Exception e) { e.printStackTrace(); } });
      ts[i].start();
    }
    for (Thread t : ts) t.join();
    System.out.printf("%.0f connections/s%n", n.get() / (double) secs);
    System.exit(0);
  }
}
