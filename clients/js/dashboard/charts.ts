// One live time-series chart (uPlot) per metric: the last few minutes.
import uPlot from "uplot";

const KEEP = 180; // points: three minutes at the dev profile's 1 s interval

export class LiveChart {
  private readonly times: number[] = [];
  private readonly values: (number | null)[] = [];
  private readonly plot: uPlot;
  private received = 0;

  /**
   * @param floor the least top of a y axis that starts at zero (a flat zero line stays
   *   near zero); null for an axis fitted to the values (memory moves by small amounts).
   */
  constructor(
    private readonly figure: HTMLElement,
    color: string,
    floor: number | null,
  ) {
    const target = figure.querySelector<HTMLElement>(".plot");
    if (target === null) throw new Error("a chart figure needs a .plot element");
    this.plot = new uPlot(
      {
        width: Math.max(200, target.clientWidth),
        height: 150,
        legend: { show: false },
        cursor: { show: false },
        scales: {
          x: { time: true },
          y: floor === null ? {} : { range: (_u, _min, max) => [0, Math.max(floor, max * 1.1)] },
        },
        axes: [{ size: 28 }, { size: 48 }],
        series: [{}, { stroke: color, fill: `${color}22`, width: 1.5, points: { show: false } }],
      },
      [[], []],
      target,
    );
    new ResizeObserver(() => this.plot.setSize({ width: Math.max(200, target.clientWidth), height: 150 })).observe(
      target,
    );
  }

  /** Add a point. The figure's data-points (shown) and data-received (ever) are read by tests. */
  add(time: number, value: number): void {
    this.times.push(time);
    this.values.push(value);
    if (this.times.length > KEEP) {
      this.times.shift();
      this.values.shift();
    }
    this.plot.setData([this.times, this.values]);
    this.received += 1;
    this.figure.dataset["points"] = String(this.times.length);
    this.figure.dataset["received"] = String(this.received);
  }

  /** A gap in the stream: break the line rather than join across it. */
  gap(time: number): void {
    this.times.push(time);
    this.values.push(null); // uPlot draws null as a break in the line
  }
}
